"""Trove's management routes over instances, and the ``reset_status`` action.

``/v1.0/{admin project}/mgmt/instances`` lists the instances of every project, each
with its owner (``tenant_id`` as Trove names it, and ``project_id``); ``/mgmt`` paths
need the admin role on the admin project (``api.auth``). ``reset_status`` is the way
out of a stuck instance, for its project's members as well: it stops the instance's
unfinished tasks and leaves it ERROR, so that a plain delete is then accepted.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body
from api.instance_checks import load_instance
from api.state import Services, services
from api.views import instance_view, links, timestamp
from cellar.errors import InvalidInput, NotFound
from cellar.identity.store import Identity
from cellar.models import Backup, Instance, Secret, Task, utcnow
from cellar.status import BackupStatus, InstanceStatus, TaskState

logger = logging.getLogger(__name__)

blueprint = Blueprint("mgmt", __name__)

PAGE_MAX = 1000
PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def mgmt_view(session: Session, instance: Instance) -> dict[str, Any]:
    """An instance as an admin sees it: the project's view, its owner and its state."""
    view = instance_view(session, instance)
    task = view.get("task")
    deleted_at = timestamp(instance.deleted_at)
    view.update(
        {
            "tenant_id": instance.project_id,
            "project_id": instance.project_id,
            "server_id": instance.id,  # its container is named and labelled by this id
            "server": {
                "id": instance.id,
                "name": instance.name,
                "status": instance.status,
                "tenant_id": instance.project_id,
                "host": instance.host,
                "deleted": instance.deleted_at is not None,
                "deleted_at": deleted_at,
            },
            "service_status": instance.operating_status,
            "deleted": instance.deleted_at is not None,
            "deleted_at": deleted_at,
            "task_description": task.get("description") if task else None,
        }
    )
    return view


@blueprint.get("/v1.0/<project_id>/mgmt/instances")
def list_all(project_id: str) -> ResponseReturnValue:
    """Every project's instances; ``deleted`` (true/false), ``project_id``, ``limit``,
    ``marker`` as troveclient sends them. Cellar has no clusters, so
    ``include_clustered`` changes nothing."""
    limit = body.integer(request.args.get("limit", PAGE_MAX), "limit", 1, PAGE_MAX)
    deleted = _flag("deleted")
    _flag("include_clustered")
    owner = request.args.get("project_id") or None
    if owner is not None and not PROJECT_ID.fullmatch(owner):
        raise InvalidInput("project_id must be 1 to 64 letters, digits, underscores or hyphens")
    marker = request.args.get("marker") or None
    query = select(Instance).where(Instance.purpose.is_(None))
    if deleted is not None:
        query = query.where(
            Instance.deleted_at.is_not(None) if deleted else Instance.deleted_at.is_(None)
        )
    if owner is not None:
        query = query.where(Instance.project_id == owner)
    with services().db.session() as session:
        if marker is not None:
            after = session.get(Instance, marker)
            if after is None or after.purpose is not None:
                raise NotFound(f"marker {marker} is not an instance")
            query = query.where(
                (Instance.created < after.created)
                | ((Instance.created == after.created) & (Instance.id < after.id))
            )
        newest_first = (Instance.created.desc(), Instance.id.desc())
        rows = session.scalars(query.order_by(*newest_first).limit(limit + 1)).all()
        views = [mgmt_view(session, i) for i in rows[:limit]]
    result: dict[str, Any] = {"instances": views}
    if len(rows) > limit:
        kept = {k: v for k, v in request.args.items() if k not in ("limit", "marker")}
        query_string = urlencode({**kept, "limit": limit, "marker": rows[limit - 1].id})
        href = links(f"/v1.0/{project_id}/mgmt/instances")[0]["href"]
        result["links"] = [{"rel": "next", "href": f"{href}?{query_string}"}]
    return jsonify(result)


@blueprint.get("/v1.0/<project_id>/mgmt/instances/<instance_id>")
def show(project_id: str, instance_id: str) -> ResponseReturnValue:
    """One instance of any project; a deleted one only with ``deleted=true``."""
    with_deleted = _flag("deleted") is True
    with services().db.session() as session:
        instance = session.get(Instance, instance_id)
        if (
            instance is None
            or instance.purpose is not None
            or (instance.deleted_at is not None and not with_deleted)
        ):
            raise NotFound(f"instance {instance_id} does not exist")
        view = mgmt_view(session, instance)
        view["guest_status"] = {"state_description": instance.operating_status.lower()}
        return jsonify({"instance": view})


def reset_status(svc: Services, project_id: str, instance_id: str, spec: object) -> None:
    """Trove's ``reset_status``: stop the instance's unfinished tasks so that no worker
    commits another step of them, fail its unfinished backups, and leave it ERROR with a
    fault that says who reset it. ``force_delete`` (troveclient's) is accepted."""
    if spec is not None and (not isinstance(spec, dict) or set(spec) - {"force_delete"}):
        raise InvalidInput('reset_status takes {} (troveclient may add "force_delete")')
    who = _who(g.get("identity"))
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        reason = f"the instance's status was reset by {who}"
        stopped = stop_tasks(session, instance, f"cancelled: {reason}")
        failed = fail_backups(session, instance, f"failed: {reason}")
        previous = instance.status
        instance.status = InstanceStatus.ERROR.value
        fault = f"status reset to ERROR (it was {previous}) by {who}"
        if stopped:
            fault += "; stopped " + ", ".join(f"task {t.id} ({t.workflow})" for t in stopped)
        instance.fault, instance.fault_at = fault, utcnow()
        details = {
            "previous_status": previous,
            "stopped_tasks": [t.id for t in stopped],
            "failed_backups": failed,
            "force_delete": isinstance(spec, dict) and bool(spec.get("force_delete")),
        }
        audit.record(session, project_id, "instance.reset_status", "instance", instance.id, details)
    logger.info(
        "instance %s reset to ERROR by %s; %d tasks stopped", instance_id, who, len(stopped)
    )


def stop_tasks(session: Session, instance: Instance, reason: str) -> list[Task]:
    """End the instance's unfinished tasks. That fences their workers out: a step's
    commits, and the renewals of its lease, go through only while its task is RUNNING
    (``taskmanager.lease``), so a worker still in a step writes nothing more of it.

    The lease itself is left as it is: a delete still waits for a step that a worker may
    be running, until that worker lets go of the lease as it abandons the step (or the
    lease runs out, when the worker is gone)."""
    tasks = session.scalars(
        select(Task)
        .where(Task.instance_id == instance.id, Task.state == TaskState.RUNNING.value)
        .with_for_update()
    ).all()
    now = utcnow()
    for task in tasks:
        task.state = TaskState.CANCELLED.value
        task.error = reason
        task.finished_at = now
        task.duration = (now - task.created).total_seconds()
        secret = session.get(Secret, task.id)
        if secret is not None:
            session.delete(secret)
    return list(tasks)


def fail_backups(session: Session, instance: Instance, reason: str) -> list[str]:
    """The instance's unfinished backups end FAILED (their tasks are stopped)."""
    backups = session.scalars(
        select(Backup).where(
            Backup.instance_id == instance.id,
            Backup.deleted_at.is_(None),
            Backup.status.in_((BackupStatus.NEW.value, BackupStatus.BUILDING.value)),
        )
    ).all()
    for backup in backups:
        backup.status = BackupStatus.FAILED.value
        backup.fault = reason
        backup.finished_at = utcnow()
    return [b.id for b in backups]


def _who(identity: Identity | None) -> str:
    if identity is None:
        return "an unauthenticated request"
    return f"user {identity.user_name} ({identity.user_id}) of project {identity.project_name}"


def _flag(name: str) -> bool | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false, not {value!r}")
