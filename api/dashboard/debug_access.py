"""An instance's debug logins on the dashboard: ask for one, see its password once,
approve or reject another member's request, and revoke one after a confirmation.

The password is shown on the page that answers the request, never put in a flash
message: those travel in the session cookie, which is signed but not encrypted.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure, call
from api.dashboard.views import blueprint, page

LIVE = ("PENDING_APPROVAL", "ISSUING", "ACTIVE")


def logins(instance_id: str) -> list[dict[str, Any]]:
    """The instance's debug logins that are not over, newest first ([] if unreadable)."""
    try:
        rows = call("GET", f"/instances/{instance_id}/credentials")["credentials"]
    except ApiFailure:
        return []
    return [row for row in rows if row["state"] in LIVE]


def _back(instance_id: str) -> ResponseReturnValue:
    return redirect(url_for("dashboard.instance", instance_id=instance_id))


@blueprint.post("/instances/<instance_id>/debug-access")
def ask_debug_access(instance_id: str) -> ResponseReturnValue:
    form = request.form
    databases = [n.strip() for n in form.get("databases", "").split(",") if n.strip()]
    asked: dict[str, Any] = {
        "reason": form.get("reason", "").strip(),
        "access": form.get("access", "read"),
        "ttl_seconds": form.get("ttl_seconds", "3600").strip() or "3600",
    }
    if databases:
        asked["databases"] = databases
    try:
        shown = call("POST", f"/instances/{instance_id}/credentials", {"credential": asked})
    except ApiFailure as exc:
        flash(exc.message, "error")
        return _back(instance_id)
    login = shown["credential"]
    command = (f"cellar debug-access create {instance_id} --reason '...' --access "
               f"{login['access']} --ttl {login['ttl_seconds']}"
               + "".join(f" --database {d}" for d in login["databases"]))  # fmt: skip
    return page("debug_access.html", command, login=login, instance_id=instance_id)


@blueprint.post("/instances/<instance_id>/debug-access/<credential_id>/<verdict>")
def judge_debug_access(instance_id: str, credential_id: str, verdict: str) -> ResponseReturnValue:
    if verdict not in ("approve", "reject"):
        return "no such page", 404
    try:
        call("POST", f"/instances/{instance_id}/credentials/{credential_id}/action",
             {verdict: {}})  # fmt: skip
        flash(f"{verdict}d the request for debug access", "ok")
    except ApiFailure as exc:
        flash(exc.message, "error")
    return _back(instance_id)


@blueprint.get("/instances/<instance_id>/debug-access/<credential_id>/revoke")
def confirm_revoke(instance_id: str, credential_id: str) -> ResponseReturnValue:
    login = call("GET", f"/instances/{instance_id}/credentials/{credential_id}")["credential"]
    return page("confirm_revoke.html", f"cellar debug-access revoke {instance_id} {credential_id}",
                login=login, instance_id=instance_id)  # fmt: skip


@blueprint.post("/instances/<instance_id>/debug-access/<credential_id>/revoke")
def revoke_debug_access(instance_id: str, credential_id: str) -> ResponseReturnValue:
    try:
        call("DELETE", f"/instances/{instance_id}/credentials/{credential_id}")
        flash("the debug login was revoked and its sessions ended", "ok")
    except ApiFailure as exc:
        flash(exc.message, "error")
    return _back(instance_id)
