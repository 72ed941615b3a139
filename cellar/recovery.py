"""The recovery window of an instance: the moments a point-in-time restore can reach."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellar import catalog
from cellar.models import ArchiveSegment, Backup, Instance
from cellar.status import BackupStatus


def recovery_window(session: Session, instance: Instance) -> dict[str, dt.datetime] | None:
    """The earliest and latest moments a restore of this instance can reach, if any."""
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None or not version.archive_format:
        return None
    earliest = session.scalar(
        select(func.min(Backup.finished_at)).where(
            Backup.instance_id == instance.id,
            Backup.type == "full",
            Backup.status == BackupStatus.COMPLETED.value,
            Backup.deleted_at.is_(None),
        )
    )
    if earliest is None:
        return None
    latest_backup = session.scalar(
        select(func.max(Backup.finished_at)).where(
            Backup.instance_id == instance.id,
            Backup.status == BackupStatus.COMPLETED.value,
            Backup.deleted_at.is_(None),
        )
    )
    latest_archive = session.scalar(
        select(func.max(ArchiveSegment.closed_at)).where(ArchiveSegment.instance_id == instance.id)
    )
    latest = max(t for t in (earliest, latest_backup, latest_archive) if t is not None)
    return {"earliest": earliest, "latest": latest}
