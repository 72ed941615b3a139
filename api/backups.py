"""/backups: take, list, show, delete and verify backups (Trove's routes, Cellar's verify).

A backup request writes the backup row (NEW), the task and the audit row in one
transaction and answers 202; the worker streams the backup from the instance's agent
into backup storage.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body
from api.backup_views import backup_view, children, load_backup
from api.idempotency import claim, idempotent
from api.instance_checks import busy_check, load_instance
from api.schemas import parse
from api.schemas.backups import BackupAction, CreateBackup
from api.state import services
from api.views import task_view
from cellar import catalog, quotas
from cellar.backups import chain_of, start_backup, start_verify
from cellar.errors import Busy, Conflict, InvalidInput
from cellar.models import Backup, Instance, new_id, utcnow
from cellar.status import BackupStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("backups", __name__)

PAGE_MAX = 1000


def _parent(
    session: Any, project_id: str, instance: Instance, data: dict[str, Any]
) -> Backup | None:
    """The backup an incremental builds on: ``parent_id``, or with ``incremental`` the latest."""
    parent_id = data.get("parent_id")
    incremental = data.get("incremental") in (1, True, "1", "true")
    if not parent_id and not incremental:
        return None
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None or not version.has_incremental_backups:
        raise Busy(
            f"{instance.datastore} {instance.datastore_version} has no incremental backups; "
            "take a full backup (leave out incremental and parent_id)"
        )
    if parent_id:
        parent = load_backup(session, project_id, str(parent_id))
    else:
        parent = session.scalars(
            select(Backup)
            .where(
                Backup.instance_id == instance.id,
                Backup.status == BackupStatus.COMPLETED.value,
                Backup.deleted_at.is_(None),
            )
            .order_by(Backup.created.desc())
        ).first()
        if parent is None:
            raise InvalidInput(f"instance {instance.id} has no completed backup to build on")
    if parent.instance_id != instance.id or parent.status != BackupStatus.COMPLETED.value:
        raise InvalidInput(
            f"parent backup {parent.id} must be a COMPLETED backup of instance {instance.id}"
        )
    return parent


def _shown(session: Session, backup_id: str) -> dict[str, Any]:
    backup = session.get(Backup, backup_id)
    assert backup is not None
    return {"backup": backup_view(backup)}


@blueprint.post("/v1.0/<project_id>/backups")
@idempotent("backup", 202, _shown)
def create(project_id: str) -> ResponseReturnValue:
    data = parse(CreateBackup)
    name = body.text(data, "name")
    description = body.text(data, "description", required=False, max_len=2000)
    instance_id = data.get("instance")
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidInput("instance is required: the id of the instance to back up")
    svc = services()
    with svc.db.session() as session:
        backup_id = new_id()
        claim(session, backup_id)
        instance = load_instance(session, project_id, instance_id)
        busy_check(session, instance)
        parent = _parent(session, project_id, instance, data)
        quotas.reserve(session, svc.settings, project_id, {quotas.Resource.BACKUPS: 1})
        backup, task = start_backup(
            session, svc.secrets, instance, name=name, description=description, parent=parent,
            request_id=g.request_id, backup_id=backup_id,
        )  # fmt: skip
        audit.record(
            session, project_id, "backup.create", "backup", backup.id,
            {"instance": instance.id, "type": backup.type, "parent_id": backup.parent_id,
             "task_id": task.id},
        )  # fmt: skip
        session.flush()
        view = backup_view(backup)
    svc.enqueue(task.id, 0.0, g.request_id)
    return jsonify({"backup": view}), 202


def _listing(project_id: str, instance_id: str | None) -> ResponseReturnValue:
    limit = body.integer(request.args.get("limit", PAGE_MAX), "limit", 1, PAGE_MAX)
    query = select(Backup).where(Backup.project_id == project_id, Backup.deleted_at.is_(None))
    instance_id = instance_id or request.args.get("instance_id")
    if instance_id:
        query = query.where(Backup.instance_id == instance_id)
    datastore = request.args.get("datastore")
    if datastore:
        query = query.where(Backup.datastore == datastore)
    with services().db.session() as session:
        rows = session.scalars(query.order_by(Backup.created.desc()).limit(limit)).all()
        return jsonify({"backups": [backup_view(b) for b in rows]})


@blueprint.get("/v1.0/<project_id>/backups")
def list_all(project_id: str) -> ResponseReturnValue:
    return _listing(project_id, None)


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>/backups")
def list_for_instance(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        load_instance(session, project_id, instance_id)
    return _listing(project_id, instance_id)


@blueprint.get("/v1.0/<project_id>/backups/<backup_id>")
def show(project_id: str, backup_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        return jsonify({"backup": backup_view(load_backup(session, project_id, backup_id))})


@blueprint.delete("/v1.0/<project_id>/backups/<backup_id>")
def delete(project_id: str, backup_id: str) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        backup = load_backup(session, project_id, backup_id)
        if backup.status in (BackupStatus.NEW.value, BackupStatus.BUILDING.value):
            raise Busy(f"backup {backup.id} is {backup.status}; delete it once it has ended")
        dependent = children(session, backup)
        if dependent:
            raise Conflict(
                f"backup {backup.id} is the parent of {', '.join(dependent)}; delete those first"
            )
        backup.deleted_at = utcnow()
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=WorkflowName.DELETE_BACKUP,
            request_id=g.request_id, params={"backup_id": backup.id},
        )  # fmt: skip
        audit.record(session, project_id, "backup.delete", "backup", backup.id,
                     {"task_id": task.id})  # fmt: skip
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


@blueprint.post("/v1.0/<project_id>/backups/<backup_id>/action")
def action(project_id: str, backup_id: str) -> ResponseReturnValue:
    data = parse(BackupAction)
    if set(data) != {"verify"}:
        raise InvalidInput('name one action: {"verify": {}}')
    svc = services()
    with svc.db.session() as session:
        backup = load_backup(session, project_id, backup_id)
        if backup.status != BackupStatus.COMPLETED.value:
            raise Busy(f"backup {backup.id} is {backup.status}; only a COMPLETED one is verified")
        chain = [b.id for b in chain_of(session, backup)]
        task = start_verify(session, svc.secrets, backup, chain, g.request_id)
        audit.record(session, project_id, "backup.verify", "backup", backup.id,
                     {"task_id": task.id})  # fmt: skip
        session.flush()
        view = task_view(task)
    svc.enqueue(task.id, 0.0, g.request_id)
    return jsonify({"task": view}), 202
