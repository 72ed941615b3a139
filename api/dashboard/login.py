"""Logging in and out of the dashboard, and switching project.

A login asks the identity API for a token scoped to the project named in the form (with a
password or an application credential, as ``openstack`` does); switching project trades
the token for one scoped to the other project (Keystone's ``token`` method). The list of
projects the switcher offers is the identity API's ``/auth/projects``.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure, identity
from api.dashboard.views import blueprint, page

DOMAIN = {"id": "default"}


@blueprint.get("/login")
def login_form() -> ResponseReturnValue:
    return page("login.html", "cellar login", error=None, next=_next())


def _next() -> str:
    wanted = request.values.get("next", "")
    return wanted if wanted.startswith("/dashboard/") and "//" not in wanted else ""


def _auth_body() -> dict[str, Any]:
    form = request.form
    if form.get("method") == "application_credential":
        return {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {
                    "id": form.get("credential_id", "").strip(),
                    "secret": form.get("credential_secret", ""),
                },
            }
        }
    project = form.get("project", "").strip()
    body: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {
                    "name": form.get("username", "").strip(),
                    "domain": DOMAIN,
                    "password": form.get("password", ""),
                }
            },
        }
    }
    if project:
        body["scope"] = {"project": {"name": project, "domain": DOMAIN}}
    return body


@blueprint.post("/login")
def log_in() -> ResponseReturnValue:
    try:
        headers, data = identity("POST", "/auth/tokens?nocatalog", {"auth": _auth_body()})
    except ApiFailure as exc:
        message = (
            "the user name, password or project is not right"
            if exc.status == 401
            else (exc.message)
        )
        return page("login.html", "cellar login", error=message, next=_next()), exc.status
    token = headers.get("X-Subject-Token", "")
    if not data["token"].get("project"):
        return page(
            "login.html", "cellar login", next=_next(),
            error="the login has no project: name one you are a member of",
        ), 400  # fmt: skip
    _keep(token, data["token"])
    return redirect(_next() or url_for("dashboard.instances"))


def _keep(token: str, shown: dict[str, Any]) -> None:
    session.clear()
    session["token"] = token
    session["user_name"] = shown["user"]["name"]
    session["project_id"] = shown["project"]["id"]
    session["project_name"] = shown["project"]["name"]
    session["roles"] = [role["name"] for role in shown.get("roles", [])]
    session["csrf"] = secrets.token_urlsafe(24)
    try:
        _headers, found = identity("GET", "/auth/projects", token=token)
        projects = found.get("projects", [])
    except ApiFailure:
        projects = []
    session["projects"] = sorted(
        ({"id": p["id"], "name": p["name"]} for p in projects), key=lambda p: p["name"]
    )


@blueprint.post("/project")
def switch_project() -> ResponseReturnValue:
    wanted = request.form.get("project_id", "")
    body = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": session["token"]}},
            "scope": {"project": {"id": wanted}},
        }
    }
    headers, data = identity("POST", "/auth/tokens?nocatalog", body)
    old = session["token"]
    _keep(headers.get("X-Subject-Token", ""), data["token"])
    _revoke(old)
    return redirect(url_for("dashboard.instances"))


def _revoke(token: str) -> None:
    try:
        identity("DELETE", "/auth/tokens", token=token, subject=token)
    except ApiFailure:
        pass  # already invalid: nothing to take away


@blueprint.post("/logout")
def log_out() -> ResponseReturnValue:
    _revoke(session.get("token", ""))
    session.clear()
    return redirect(url_for("dashboard.login_form"))
