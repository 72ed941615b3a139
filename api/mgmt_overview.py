"""What an operator watches across projects (admins only, as every ``/mgmt`` route):
tasks that failed or are stuck, the failovers of the last hours, and the host's capacity.

A task is stuck when it is RUNNING but no worker holds it although it is due (for
``STUCK_AFTER``), or when one step has run for longer than ``STEP_TOO_LONG``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select

from api import body
from api.replication_events import event_view
from api.state import services
from api.views import task_view
from cellar import catalog
from cellar.errors import InvalidInput
from cellar.models import Instance, ReplicationEvent, Task, utcnow
from cellar.status import TaskState

blueprint = Blueprint("mgmt_overview", __name__)

BASE = "/v1.0/<project_id>/mgmt"
STUCK_AFTER = dt.timedelta(seconds=60)
STEP_TOO_LONG = dt.timedelta(minutes=30)
MAX_ROWS = 200
STATES = ("failed", "stuck")


def _hours() -> dt.datetime:
    hours = body.integer(request.args.get("hours", 24), "hours", 1, 24 * 30)
    return utcnow() - dt.timedelta(hours=hours)


@blueprint.get(f"{BASE}/tasks")
def tasks(project_id: str) -> ResponseReturnValue:
    """``state=failed`` (in the last ``hours``, default 24) or ``state=stuck`` (now)."""
    state = request.args.get("state", "failed")
    if state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}, not {state!r}")
    now = utcnow()
    if state == "failed":
        query = select(Task).where(Task.state == TaskState.FAILED.value, Task.updated >= _hours())
    else:
        unheld = or_(Task.lease_until.is_(None), Task.lease_until < now)
        query = select(Task).where(
            Task.state == TaskState.RUNNING.value,
            or_(
                unheld & (Task.next_run_at < now - STUCK_AFTER),
                Task.step_started_at < now - STEP_TOO_LONG,
            ),
        )
    with services().db.session() as session:
        rows = session.scalars(query.order_by(Task.updated.desc()).limit(MAX_ROWS)).all()
        views = [{**task_view(t), "project_id": t.project_id, "instance_id": t.instance_id}
                 for t in rows]  # fmt: skip
    return jsonify({"tasks": views})


@blueprint.get(f"{BASE}/replication_events")
def replication_events(project_id: str) -> ResponseReturnValue:
    """Every project's changes of primary in the last ``hours`` (default 24); ``kind``
    narrows to switchover, failover or automatic_failover."""
    query = select(ReplicationEvent).where(ReplicationEvent.started_at >= _hours())
    kind = request.args.get("kind")
    if kind:
        query = query.where(ReplicationEvent.kind == kind)
    with services().db.session() as session:
        rows = session.scalars(
            query.order_by(ReplicationEvent.started_at.desc()).limit(MAX_ROWS)
        ).all()
        views = [{**event_view(e), "project_id": e.project_id} for e in rows]
    return jsonify({"replication_events": views})


@blueprint.get(f"{BASE}/capacity")
def capacity(project_id: str) -> ResponseReturnValue:
    """Instances, the memory their flavors reserve and the disk their volumes take,
    against what this host has."""
    with services().db.session() as session:
        live = select(Instance).where(Instance.deleted_at.is_(None))
        rows = session.execute(
            select(Instance.flavor_id, func.count(), func.sum(Instance.volume_size),
                   func.sum(Instance.volume_used_bytes))
            .where(Instance.deleted_at.is_(None))
            .group_by(Instance.flavor_id)
        ).all()  # fmt: skip
        count = len(session.scalars(live.with_only_columns(Instance.id)).all())
    reserved = sum(catalog.FLAVORS[f].ram_mb * n for f, n, _s, _u in rows if f in catalog.FLAVORS)
    home = services().settings.home
    disk = shutil.disk_usage(home)
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return jsonify(
        {
            "capacity": {
                "instances": count,
                "memory_mb": {"reserved": reserved, "host_total": pages // (1024 * 1024)},
                "volumes_gb": {
                    "allotted": int(sum(s or 0 for _f, _n, s, _u in rows)),
                    "used": round(sum(u or 0 for _f, _n, _s, u in rows) / 1024**3, 3),
                },
                "disk_gb": {
                    "host_total": round(disk.total / 1024**3, 1),
                    "host_free": round(disk.free / 1024**3, 1),
                },
            }
        }
    )
