"""The audit trail, from the API's side: who did what, from where, and how it ended.

A handler that changes something calls :func:`record` in the transaction of the change;
:func:`after` (run after every request) adds a row for what no handler recorded: a
change that failed, a refused token or permission, an admin reading another project.
Logins are recorded by :func:`login`. No password or token ever goes into a row.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, g, request
from sqlalchemy.orm import Session

from api.state import services
from cellar import audit as chain
from cellar.identity.store import Identity
from cellar.models import AuditEvent

logger = logging.getLogger(__name__)

CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def _row(
    project_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None,
    outcome: str,
) -> AuditEvent:
    who: Identity | None = g.get("identity")
    return AuditEvent(
        project_id=project_id,
        request_id=g.get("request_id", "-"),
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        user_id=who.user_id if who else "",
        user_name=who.user_name if who else "",
        roles=",".join(who.roles) if who else "",
        app_credential_id=who.app_credential_id if who else "",
        remote_addr=(request.remote_addr or "")[:64],
        method=request.method,
        route=request.path[:512],
        outcome=outcome,
    )


def record(
    session: Session,
    project_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """A change this request makes, in the change's own transaction."""
    chain.append(session, _row(project_id, action, target_type, target_id, details, "accepted"))
    g.audited = True


def _own_row(row: AuditEvent) -> None:
    try:
        with services().db.session() as session:
            chain.append(session, row)
    except Exception:  # the answer must still go out; the failure is in the log
        logger.exception("could not record %s in the audit trail", row.action)


def login(method: str, part: object, outcome: str, reason: str = "") -> None:
    """A login (a token issued) or a failed one: who tried, never with what secret."""
    who: Identity | None = g.get("identity")
    named = ""
    if isinstance(part, dict):
        user = part.get("user") or {}
        user = user if isinstance(user, dict) else {}
        named = str(user.get("name") or user.get("id") or part.get("name") or part.get("id") or "")
    details = {"method": method, "as": named[:255]}
    if reason:
        details["reason"] = reason
    action = "identity.login" if outcome == "ok" else "identity.login_failed"
    row = _row(
        who.project_id if who else "",
        action,
        "user",
        who.user_id if who else named[:64],
        details,
        "201" if outcome == "ok" else "401",
    )
    _own_row(row)
    g.audited = True


def after(response: Response) -> None:
    """What no handler recorded: failed changes, refusals, admins' reads elsewhere."""
    if g.get("audited") or request.path in ("/", "/v1.0/", "/healthcheck", "/favicon.ico"):
        return
    status = response.status_code
    project = str((request.view_args or {}).get("project_id") or "")
    who: Identity | None = g.get("identity")
    if status in (401, 403):
        action = "auth.denied"
    elif request.method in CHANGES:
        action = "request.failed" if status >= 400 else "request.change"
    elif g.get("cross_project") and status < 400:
        action = "admin.read"
    else:
        return
    target = str(next((v for k, v in (request.view_args or {}).items() if k != "project_id"), ""))
    details: dict[str, Any] = {}
    if who is not None and project and who.project_id != project:
        details["scoped_to"] = who.project_id
    _own_row(
        _row(
            project or (who.project_id if who else ""),
            action,
            "route",
            target[:64],
            details,
            str(status),
        )
    )
