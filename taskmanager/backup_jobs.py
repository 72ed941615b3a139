"""Starting backups and verifications, scheduled backups and their retention.

The API and beat start the same way: :func:`start_backup` and :func:`start_verify` add
the rows and the task in the caller's session (the caller enqueues after commit).
:func:`run_due_strategies` runs from beat; :func:`prune` runs after a scheduled backup:
it keeps what the strategy's count or age allows, every backup a kept incremental builds
on, and always the newest completed full backup of the instance.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellar import cron
from cellar.errors import NotFound
from cellar.models import AuditEvent, Backup, BackupStrategy, Instance, Task, new_id, utcnow
from cellar.status import IN_SERVICE, BackupStatus, InstanceStatus, TaskState
from taskmanager.context import Services
from taskmanager.runner import start_task

logger = logging.getLogger(__name__)

READY = IN_SERVICE
VERIFY_FLAVOR = "2"


def start_backup(
    services: Services,
    session: Session,
    instance: Instance,
    *,
    name: str,
    request_id: str,
    description: str = "",
    parent: Backup | None = None,
    strategy_id: str | None = None,
) -> tuple[Backup, Task]:
    """A NEW backup of ``instance`` and its task; the instance shows BACKUP."""
    backup = Backup(
        id=new_id(),
        project_id=instance.project_id,
        instance_id=instance.id,
        name=name,
        description=description,
        datastore=instance.datastore,
        datastore_version=instance.datastore_version,
        volume_size=instance.volume_size,
        type="incremental" if parent else "full",
        parent_id=parent.id if parent else None,
        status=BackupStatus.NEW.value,
        strategy_id=strategy_id,
    )
    session.add(backup)
    previous, instance.status = instance.status, InstanceStatus.BACKUP.value
    task = start_task(
        services, session, project_id=instance.project_id, workflow="backup",
        request_id=request_id, instance_id=instance.id,
        params={"backup_id": backup.id, "previous_status": previous},
    )  # fmt: skip
    return backup, task


def start_verify(
    services: Services, session: Session, backup: Backup, chain: list[str], request_id: str
) -> Task:
    """A hidden scratch instance that restores ``chain`` (ids, full first) and checks it."""
    scratch = Instance(
        id=new_id(),
        project_id=backup.project_id,
        name=f"verify-{backup.id[:8]}",
        flavor_id=VERIFY_FLAVOR,
        datastore=backup.datastore,
        datastore_version=backup.datastore_version,
        volume_size=backup.volume_size,
        status=InstanceStatus.BUILD.value,
        purpose="verify",
    )
    session.add(scratch)
    return start_task(
        services, session, project_id=backup.project_id, workflow="verify_backup",
        request_id=request_id, instance_id=scratch.id,
        params={"backup_id": backup.id, "restore": {"chain": chain}, "started": time.time()},
    )  # fmt: skip


def latest_completed(session: Session, instance_id: str) -> Backup | None:
    return session.scalars(
        select(Backup)
        .where(
            Backup.instance_id == instance_id,
            Backup.status == BackupStatus.COMPLETED.value,
            Backup.deleted_at.is_(None),
        )
        .order_by(Backup.created.desc())
    ).first()


def chain_of(session: Session, backup: Backup) -> list[Backup]:
    """``backup`` and the backups it builds on, the full one first; NotFound if one is gone."""
    found = [backup]
    while found[0].parent_id:
        parent = session.get(Backup, found[0].parent_id)
        if parent is None or parent.deleted_at is not None:
            raise NotFound(f"backup {found[0].id} needs its parent {found[0].parent_id}, gone")
        found.insert(0, parent)
    return found


def _busy(session: Session, instance_id: str) -> bool:
    task = session.scalars(
        select(Task.id).where(
            Task.instance_id == instance_id, Task.state == TaskState.RUNNING.value
        )
    ).first()
    return task is not None


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
            parent = latest_completed(session, instance.id) if strategy.incremental else None
            backup, task = start_backup(
                services, session, instance, name=f"scheduled {now:%Y-%m-%d %H:%M}",
                request_id=f"schedule-{strategy.id[:8]}", parent=parent, strategy_id=strategy.id,
            )  # fmt: skip
            strategy.last_run_at, strategy.last_backup_id = now, backup.id
            strategy.next_run_at = cron.next_after(cron.parse(strategy.schedule), now)
            session.add(
                AuditEvent(project_id=instance.project_id, request_id=task.request_id,
                           action="backup.scheduled", target_type="backup", target_id=backup.id,
                           details={"strategy_id": strategy.id, "task_id": task.id})
            )  # fmt: skip
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
                services,
                session,
                project_id=backup.project_id,
                workflow="delete_backup",
                request_id=f"retention-{strategy.id[:8]}",
                params={"backup_id": backup.id},
            )
        )
        logger.info("retention of strategy %s lets backup %s go", strategy.id, backup.id)
    return tasks
