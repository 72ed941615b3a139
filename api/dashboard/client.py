"""The dashboard's way to the API: each call goes through the API's own routes in process.

A page never reads the metadata itself: it asks :func:`call` as a REST client would, with
the token kept in the signed session cookie, so every check of who may do what (project,
role, quota, validation, the audit trail) is the API's own and is applied exactly once.
"""

from __future__ import annotations

from typing import Any

import requests
from flask import current_app, g, session

from api import auth

TIMEOUT = 10.0  # seconds for an external Keystone to answer a login


class ApiFailure(Exception):
    """The API refused or failed a call: ``status`` and the API's own ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(status: int, data: Any) -> str:
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
        if isinstance(data.get("error"), dict):
            return str(data["error"].get("message", ""))
    return f"the API answered {status}"


def raw(
    method: str, path: str, body: Any = None, token: str | None = None, subject: str = ""
) -> tuple[int, dict[str, str], Any]:
    """One API call by absolute path: status, headers and the JSON body (None if none)."""
    headers = {"X-Request-ID": g.get("request_id", "")}
    if token:
        headers["X-Auth-Token"] = token
    if subject:
        headers["X-Subject-Token"] = subject
    with current_app.test_client() as client:
        answer = client.open(path, method=method, json=body, headers=headers)
        data = answer.get_json(silent=True)
        return answer.status_code, dict(answer.headers), data


def call(method: str, path: str, body: Any = None) -> Any:
    """A call in the session's project (``path`` after ``/v1.0/{project}``); raises
    :class:`ApiFailure` for any answer of 400 or more."""
    status, _headers, data = raw(
        method, f"/v1.0/{session['project_id']}{path}", body, session.get("token")
    )
    if status >= 400:
        raise ApiFailure(status, _message(status, data))
    return data


def identity(
    method: str, path: str, body: Any = None, token: str | None = None, subject: str = ""
) -> tuple[dict[str, str], Any]:
    """A call to the identity API (``path`` after ``/v3``): Cellar's own in process, or
    the Keystone that ``CELLAR_AUTH_URL`` names. Returns (headers, JSON body)."""
    settings = auth.current().settings
    if settings.own_identity:
        status, headers, data = raw(method, f"/identity/v3{path}", body, token, subject)
    else:
        sent = {"X-Auth-Token": token} if token else {}
        if subject:
            sent["X-Subject-Token"] = subject
        try:
            answer = requests.request(
                method, settings.auth_url.rstrip("/") + path, json=body, headers=sent,
                timeout=TIMEOUT,
            )  # fmt: skip
        except requests.RequestException as exc:
            raise ApiFailure(503, f"the identity service did not answer: {exc}") from exc
        status, headers = answer.status_code, dict(answer.headers)
        data = answer.json() if answer.content else None
    if status >= 400:
        raise ApiFailure(status, _message(status, data))
    return headers, data
