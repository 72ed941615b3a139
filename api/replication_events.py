"""/instances/{id}/replication_events (a Cellar resource): the changes of primary of the
instance's replica set, newest first, with their timestamps."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select

from api.instance_checks import load_instance
from api.state import services
from api.views import timestamp
from cellar.models import ReplicationEvent

blueprint = Blueprint("replication_events", __name__)


def event_view(row: ReplicationEvent) -> dict[str, Any]:
    seconds = None
    start = row.detected_at or row.started_at
    if row.finished_at is not None:
        seconds = round((row.finished_at - start).total_seconds(), 3)
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "old_primary": row.old_primary_id,
        "new_primary": row.new_primary_id,
        "detected": timestamp(row.detected_at),
        "started": timestamp(row.started_at),
        "promoted": timestamp(row.promoted_at),
        "finished": timestamp(row.finished_at),
        "seconds": seconds,
        "behind_bytes": row.behind_bytes,
        "behind_seconds": row.behind_seconds,
        "detail": row.detail,
    }


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>/replication_events")
def for_instance(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        conditions = [
            ReplicationEvent.old_primary_id == instance.id,
            ReplicationEvent.new_primary_id == instance.id,
        ]
        if instance.replica_set_id:
            conditions.append(ReplicationEvent.set_id == instance.replica_set_id)
        rows = session.scalars(
            select(ReplicationEvent)
            .where(ReplicationEvent.project_id == project_id, or_(*conditions))
            .order_by(ReplicationEvent.started_at.desc())
        ).all()
        return jsonify({"replication_events": [event_view(r) for r in rows]})
