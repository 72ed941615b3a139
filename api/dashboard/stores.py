"""The project's backups, configuration groups (with their parameters' rules) and audit
trail."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure, call
from api.dashboard.views import blueprint, page


@blueprint.get("/backups")
def backups() -> ResponseReturnValue:
    rows = call("GET", "/backups")["backups"]
    return page("backups.html", "cellar backup list", backups=rows)


@blueprint.post("/backups/<backup_id>/verify")
def verify_backup(backup_id: str) -> ResponseReturnValue:
    try:
        call("POST", f"/backups/{backup_id}/action", {"verify": {}})
        flash(f"verifying backup {backup_id}", "ok")
    except ApiFailure as exc:
        flash(exc.message, "error")
    return redirect(url_for("dashboard.backups"))


@blueprint.get("/backups/<backup_id>/delete")
def confirm_backup_delete(backup_id: str) -> ResponseReturnValue:
    backup = call("GET", f"/backups/{backup_id}")["backup"]
    return page("confirm_backup.html", f"cellar backup delete {backup_id}", backup=backup)


@blueprint.post("/backups/<backup_id>/delete")
def delete_backup(backup_id: str) -> ResponseReturnValue:
    try:
        call("DELETE", f"/backups/{backup_id}")
        flash(f"deleting backup {backup_id}", "ok")
    except ApiFailure as exc:
        flash(exc.message, "error")
    return redirect(url_for("dashboard.backups"))


@blueprint.get("/configurations")
def configurations() -> ResponseReturnValue:
    groups = call("GET", "/configurations")["configurations"]
    datastores = call("GET", "/datastores")["datastores"]
    chosen = request.args.get("version", "")
    versions = [f"{d['name']}/{v['name']}" for d in datastores for v in d.get("versions", [])]
    chosen = chosen if chosen in versions else (versions[0] if versions else "")
    rules = []
    if chosen:
        datastore, _sep, version = chosen.partition("/")
        path = f"/datastores/{datastore}/versions/{version}/parameters"
        rules = call("GET", path)["configuration-parameters"]
    return page(
        "configurations.html", "cellar configuration list", groups=groups, versions=versions,
        chosen=chosen, rules=rules,
    )  # fmt: skip


@blueprint.get("/audit")
def audit() -> ResponseReturnValue:
    action = request.args.get("action", "").strip()
    query = f"?limit=100&action={action}" if action else "?limit=100"
    events = call("GET", f"/audit{query}")["events"]
    command = "cellar audit list --limit 100" + (f" --action {action}" if action else "")
    return page("audit.html", command, events=events, action=action)
