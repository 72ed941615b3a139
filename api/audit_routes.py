"""/audit (a Cellar resource): who did what, newest first; and the chain's check.

Members and readers of a project see its own rows. An admin asking in the admin
project sees every project's rows (``project_id`` narrows them), and may have the
whole chain checked at ``/mgmt/audit/verify``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, or_, select

from api import auth, body
from api.state import services
from api.views import timestamp
from cellar import audit
from cellar.errors import InvalidInput
from cellar.models import AuditEvent

blueprint = Blueprint("audit", __name__)

PAGE_MAX = 500
FILTERS = {
    "user": (AuditEvent.user_id, AuditEvent.user_name),
    "target": (AuditEvent.target_id,),
    "action": (AuditEvent.action,),
}


def _moment(field: str) -> dt.datetime | None:
    raw = request.args.get(field, "").strip()
    return body.moment(raw, field) if raw else None


def _sees_all(project_id: str) -> bool:
    who = g.get("identity")
    checks = auth.current()
    if not checks.enabled:
        return False
    return who is not None and checks.is_admin(who) and project_id == who.project_id


def _query(project_id: str) -> Select[AuditEvent]:
    query = select(AuditEvent)
    if not _sees_all(project_id):
        query = query.where(AuditEvent.project_id == project_id)
    elif request.args.get("project_id"):
        query = query.where(AuditEvent.project_id == request.args["project_id"])
    for name, columns in FILTERS.items():
        value = request.args.get(name, "").strip()
        if value:
            if len(value) > 255:
                raise InvalidInput(f"{name} must be at most 255 characters")
            query = query.where(or_(*(column == value for column in columns)))
    since, until = _moment("since"), _moment("until")
    if since is not None:
        query = query.where(AuditEvent.created >= since)
    if until is not None:
        query = query.where(AuditEvent.created < until)
    marker = request.args.get("marker")
    if marker:
        query = query.where(AuditEvent.seq < body.integer(marker, "marker", 1, 2**62))
    return query


def _view(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "seq": e.seq,
        "project_id": e.project_id,
        "action": e.action,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "user_id": e.user_id,
        "user_name": e.user_name,
        "roles": [r for r in e.roles.split(",") if r],
        "application_credential_id": e.app_credential_id or None,
        "remote_addr": e.remote_addr,
        "method": e.method,
        "route": e.route,
        "outcome": e.outcome,
        "request_id": e.request_id,
        "details": e.details,
        "created": timestamp(e.created),
    }


@blueprint.get("/v1.0/<project_id>/audit")
def list_events(project_id: str) -> ResponseReturnValue:
    limit = body.integer(request.args.get("limit", 100), "limit", 1, PAGE_MAX)
    query = _query(project_id).order_by(AuditEvent.seq.desc()).limit(limit + 1)
    with services().db.session() as session:
        rows = session.scalars(query).all()
        events = [_view(e) for e in rows[:limit]]
    reply: dict[str, Any] = {"events": events}
    if len(rows) > limit:
        args = {k: v for k, v in request.args.items() if k != "marker"}
        args["marker"] = str(rows[limit - 1].seq)
        query_string = "&".join(f"{k}={v}" for k, v in args.items())
        reply["links"] = [{"rel": "next", "href": f"{request.base_url}?{query_string}"}]
    return jsonify(reply)


@blueprint.get("/v1.0/<project_id>/mgmt/audit/verify")
def verify_chain(project_id: str) -> ResponseReturnValue:
    """Re-walk the whole chain and its signed checkpoints (admins only: a /mgmt route)."""
    signer = audit.load_signer(services().settings.home)
    with services().db.session() as session:
        report = audit.verify(session, audit.public_key(signer))
    findings = []
    if report.finding is not None:
        found = report.finding
        findings.append(
            {"seq": found.seq, "id": found.row_id, "problem": found.problem, "text": str(found)}
        )
    reply = {
        "intact": report.intact,
        "rows": report.rows,
        "checkpoints": report.checkpoints,
        "findings": findings,
    }
    return jsonify({"audit": reply})
