"""/backup_strategies: Trove's per-instance strategy, with Cellar's schedule and retention.

``{"backup_strategy": {"instance_id", "schedule": "0 3 * * *", "keep_count": 7,
"keep_days": 30, "verify": true, "incremental": false}}``. One strategy per instance: a
new one replaces the old. Beat starts each backup when its schedule comes (UTC).

The stock client's body, ``{"instance_id", "swift_container"}``, is the same with every
extra left at its default: a backup every day at 03:00 UTC, all of them kept. Backups go
to Cellar's backup storage whatever the container; its name is kept and shown.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body
from api.idempotency import claim, idempotent
from api.instance_checks import load_instance
from api.schemas import parse
from api.schemas.backups import CreateBackupStrategy
from api.state import services
from api.views import timestamp
from cellar import catalog, cron
from cellar.errors import Busy, InvalidInput, NotFound
from cellar.models import BackupStrategy, new_id, utcnow

blueprint = Blueprint("backup_strategies", __name__)
PATH = "/v1.0/<project_id>/backup_strategies"
DEFAULT_SCHEDULE = "0 3 * * *"
CONTAINER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


def strategy_view(strategy: BackupStrategy) -> dict[str, Any]:
    return {
        "id": strategy.id,
        "project_id": strategy.project_id,
        "instance_id": strategy.instance_id,
        "backend": "cellar",
        "swift_container": strategy.container,
        "schedule": strategy.schedule,
        "keep_count": strategy.keep_count,
        "keep_days": strategy.keep_days,
        "verify": strategy.verify,
        "incremental": strategy.incremental,
        "next_run_at": timestamp(strategy.next_run_at),
        "last_run_at": timestamp(strategy.last_run_at),
        "last_backup_id": strategy.last_backup_id,
    }


def _flag(data: dict[str, Any], field: str) -> bool:
    value = data.get(field, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false")
    return value


def _limit(data: dict[str, Any], field: str, high: int) -> int | None:
    value = data.get(field)
    return None if value is None else body.integer(value, field, 1, high)


def _container(data: dict[str, Any]) -> str | None:
    value = data.get("swift_container")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not CONTAINER.fullmatch(value):
        raise InvalidInput(
            "swift_container must be 1 to 255 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def _project(project_id: str) -> None:
    """Trove's ``?project_id=``: another project's strategies are not this caller's."""
    asked = request.args.get("project_id")
    if asked and asked != project_id:
        raise InvalidInput(f"project_id must be this project ({project_id}) or left out")


def _live(session: Any, project_id: str, instance_id: str | None) -> list[BackupStrategy]:
    query = select(BackupStrategy).where(
        BackupStrategy.project_id == project_id, BackupStrategy.deleted_at.is_(None)
    )
    if instance_id:
        query = query.where(BackupStrategy.instance_id == instance_id)
    return list(session.scalars(query.order_by(BackupStrategy.created)))


def _shown(session: Session, strategy_id: str) -> dict[str, Any]:
    strategy = session.get(BackupStrategy, strategy_id)
    assert strategy is not None
    return {"backup_strategy": strategy_view(strategy)}


@blueprint.post(PATH)
@idempotent("backup_strategy", 202, _shown)
def create(project_id: str) -> ResponseReturnValue:
    data = parse(CreateBackupStrategy)
    instance_id = data.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidInput("instance_id is required: Cellar schedules backups per instance")
    text = data.get("schedule", DEFAULT_SCHEDULE)
    schedule = cron.parse(text)
    container = _container(data)
    keep_count, keep_days = _limit(data, "keep_count", 1000), _limit(data, "keep_days", 3650)
    verify, incremental = _flag(data, "verify"), _flag(data, "incremental")
    now = utcnow()
    with services().db.session() as session:
        strategy_id = new_id()
        claim(session, strategy_id)
        instance = load_instance(session, project_id, instance_id)
        version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
        if incremental and (version is None or not version.has_incremental_backups):
            raise Busy(f"{instance.datastore} has no incremental backups; leave incremental out")
        for old in _live(session, project_id, instance.id):
            old.deleted_at = now
        strategy = BackupStrategy(
            id=strategy_id, project_id=project_id, instance_id=instance.id,
            schedule=str(text).strip(), keep_count=keep_count, keep_days=keep_days,
            verify=verify, incremental=incremental, next_run_at=cron.next_after(schedule, now),
            container=container,
        )  # fmt: skip
        session.add(strategy)
        details = {"schedule": strategy.schedule, "keep_count": keep_count, "keep_days": keep_days,
                   "verify": verify, "strategy_id": strategy.id}  # fmt: skip
        audit.record(
            session, project_id, "backup_strategy.create", "instance", instance.id, details
        )
        session.flush()
        view = strategy_view(strategy)
    return jsonify({"backup_strategy": view}), 202


@blueprint.get(PATH)
def list_all(project_id: str) -> ResponseReturnValue:
    _project(project_id)
    with services().db.session() as session:
        found = _live(session, project_id, request.args.get("instance_id"))
        return jsonify({"backup_strategies": [strategy_view(s) for s in found]})


@blueprint.delete(PATH)
def delete(project_id: str) -> ResponseReturnValue:
    """Trove deletes by query: ``?instance_id=...`` (required here)."""
    _project(project_id)
    instance_id = request.args.get("instance_id")
    if not instance_id:
        raise InvalidInput("name the instance: DELETE /backup_strategies?instance_id=<id>")
    with services().db.session() as session:
        found = _live(session, project_id, instance_id)
        if not found:
            raise NotFound(f"instance {instance_id} has no backup strategy")
        for strategy in found:
            strategy.deleted_at = utcnow()
        audit.record(session, project_id, "backup_strategy.delete", "instance", instance_id, {})
    return "", 202
