"""/audit (a Cellar resource): the project's trail of changes, newest first."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from api import body
from api.state import services
from api.views import timestamp
from cellar.models import AuditEvent

blueprint = Blueprint("audit", __name__)

PAGE_MAX = 500


@blueprint.get("/v1.0/<project_id>/audit")
def list_events(project_id: str) -> ResponseReturnValue:
    limit = body.integer(request.args.get("limit", 100), "limit", 1, PAGE_MAX)
    query = select(AuditEvent).where(AuditEvent.project_id == project_id)
    target = request.args.get("target_id")
    if target:
        query = query.where(AuditEvent.target_id == target)
    with services().db.session() as session:
        rows = session.scalars(query.order_by(AuditEvent.created.desc()).limit(limit)).all()
        events = [
            {
                "id": e.id,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "request_id": e.request_id,
                "details": e.details,
                "created": timestamp(e.created),
            }
            for e in rows
        ]
    return jsonify({"events": events})
