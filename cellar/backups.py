"""Backups as the metadata records them: starting a backup or a verification (for the
API and for beat's schedules), and walking a backup's chain."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellar.errors import NotFound
from cellar.models import Backup, Instance, Task, new_id
from cellar.secrets import SecretBox
from cellar.status import BackupStatus, InstanceStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

VERIFY_FLAVOR = "2"


def start_backup(
    session: Session,
    box: SecretBox,
    instance: Instance,
    *,
    name: str,
    request_id: str,
    description: str = "",
    parent: Backup | None = None,
    strategy_id: str | None = None,
    backup_id: str | None = None,
) -> tuple[Backup, Task]:
    """A NEW backup of ``instance`` and its task; the instance shows BACKUP."""
    backup = Backup(
        id=backup_id or new_id(),
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
        session, box, project_id=instance.project_id, workflow=WorkflowName.BACKUP,
        request_id=request_id, instance_id=instance.id,
        params={"backup_id": backup.id, "previous_status": previous},
    )  # fmt: skip
    return backup, task


def start_verify(
    session: Session, box: SecretBox, backup: Backup, chain: list[str], request_id: str
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
        session, box, project_id=backup.project_id, workflow=WorkflowName.VERIFY_BACKUP,
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
