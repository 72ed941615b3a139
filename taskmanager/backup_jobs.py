"""Scheduled backups and their retention.

:func:`run_due_strategies` runs from beat and starts backups as the API does
(``cellar.backups.start_backup``); :func:`prune` runs after a scheduled backup:
it keeps what the strategy's count or age allows, every backup a kept incremental builds
on, and always the newest completed full backup of the instance.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellar import audit, cron, quotas
from cellar.backups import latest_completed, start_backup
from cellar.errors import OverLimit
from cellar.models import AuditEvent, Backup, BackupStrategy, Instance, Task, utcnow
from cellar.quotas import Resource
from cellar.status import IN_SERVICE, BackupStatus, TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager.context import Services

logger = logging.getLogger(__name__)

READY = IN_SERVICE


def _busy(session: Session, instance_id: str) -> bool:
    task = session.scalars(
        select(Task.id).where(
            Task.instance_id == instance_id, Task.state == TaskState.RUNNING.value
        )
    ).first()
    return task is not None


def _fits_quota(
    session: Session, services: Services, strategy: BackupStrategy, now: dt.datetime
) -> bool:
    """Whether the project may hold one more backup; if not, this run is skipped (and
    recorded) and the strategy waits for its next time."""
    try:
        quotas.reserve(session, services.settings, strategy.project_id, {Resource.BACKUPS: 1})
    except OverLimit as exc:
        logger.warning("scheduled backup of %s skipped: %s", strategy.instance_id, exc.message)
        strategy.next_run_at = cron.next_after(cron.parse(strategy.schedule), now)
        audit.append(session, AuditEvent(
            project_id=strategy.project_id, request_id=f"schedule-{strategy.id[:8]}",
            action="backup.schedule_skipped", target_type="instance",
            target_id=strategy.instance_id, details={"reason": exc.message},
            user_name="cellar", outcome="413",
        ))  # fmt: skip
        return False
    return True


def run_due_strategies(services: Services, now: dt.datetime | None = None) -> int:
    """Start the backups whose schedule has come; returns how many started.

    A strategy whose instance is busy or not ready is tried again at the next round;
    one whose instance is gone is retired.
    """
    now = now or utcnow()
    started: list[Task] = []
    with services.db.session() as session:
        due = session.scalars(
            select(BackupStrategy).where(
                BackupStrategy.deleted_at.is_(None), BackupStrategy.next_run_at <= now
            )
        ).all()
        for strategy in due:
            instance = session.get(Instance, strategy.instance_id)
            if instance is None or instance.deleted_at is not None:
                strategy.deleted_at = now
                continue
            if instance.status not in READY or _busy(session, instance.id):
                logger.info("scheduled backup of %s waits: the instance is busy", instance.id)
                continue
            if not _fits_quota(session, services, strategy, now):
                continue
            parent = latest_completed(session, instance.id) if strategy.incremental else None
            backup, task = start_backup(
                session, services.secrets, instance, name=f"scheduled {now:%Y-%m-%d %H:%M}",
                request_id=f"schedule-{strategy.id[:8]}", parent=parent, strategy_id=strategy.id,
            )  # fmt: skip
            strategy.last_run_at, strategy.last_backup_id = now, backup.id
            strategy.next_run_at = cron.next_after(cron.parse(strategy.schedule), now)
            audit.append(session, AuditEvent(
                project_id=instance.project_id, request_id=task.request_id,
                action="backup.scheduled", target_type="backup", target_id=backup.id,
                details={"strategy_id": strategy.id, "task_id": task.id},
                user_name="cellar", outcome="started",
            ))  # fmt: skip
            started.append(task)
    for task in started:
        services.enqueue(task.id, 0.0, task.request_id)
    return len(started)


def pruned(backups: list[Backup], strategy: BackupStrategy, now: dt.datetime) -> list[Backup]:
    """Which of a strategy's completed backups (newest first) its retention lets go."""
    keep: set[str] = set()
    for index, backup in enumerate(backups):
        by_count = strategy.keep_count is not None and index < strategy.keep_count
        by_age = strategy.keep_days is not None and backup.created >= now - dt.timedelta(
            days=strategy.keep_days
        )
        if by_count or by_age or (strategy.keep_count is None and strategy.keep_days is None):
            keep.add(backup.id)
    by_id = {b.id: b for b in backups}
    for backup_id in list(keep):  # what a kept incremental builds on stays too
        parent_id = by_id[backup_id].parent_id
        while parent_id:
            keep.add(parent_id)
            parent_id = by_id[parent_id].parent_id if parent_id in by_id else None
    fulls = [b for b in backups if b.type == "full"]
    if fulls:
        keep.add(fulls[0].id)  # the newest full backup is never pruned
    return [b for b in backups if b.id not in keep]


def prune(services: Services, session: Session, strategy: BackupStrategy) -> list[Task]:
    """Mark the backups the strategy lets go as deleted; their files go by tasks."""
    backups = list(
        session.scalars(
            select(Backup)
            .where(
                Backup.strategy_id == strategy.id,
                Backup.status == BackupStatus.COMPLETED.value,
                Backup.deleted_at.is_(None),
            )
            .order_by(Backup.created.desc())
        )
    )
    tasks = []
    for backup in pruned(backups, strategy, utcnow()):
        backup.deleted_at = utcnow()
        tasks.append(
            start_task(
                session,
                services.secrets,
                project_id=backup.project_id,
                workflow=WorkflowName.DELETE_BACKUP,
                request_id=f"retention-{strategy.id[:8]}",
                params={"backup_id": backup.id},
            )
        )
        logger.info("retention of strategy %s lets backup %s go", strategy.id, backup.id)
    return tasks
