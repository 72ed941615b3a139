"""The continuous archive: beat collects each instance's closed WAL segments or binary logs.

Every round, for each running PostgreSQL or MariaDB instance, the agent first closes the
current file if it holds changes, then every closed file is copied into backup storage
with its SHA-256 and removed from the instance's volume. Files are kept from the start of
the instance's oldest completed full backup: older ones can serve no restore. An
instance with no completed full backup keeps no archive at all (its files are dropped),
so its volume never fills with them.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cellar import catalog
from cellar.errors import CellarError
from cellar.models import ArchiveSegment, Backup, Instance, new_id
from cellar.status import BackupStatus, InstanceStatus
from taskmanager.context import Services

logger = logging.getLogger(__name__)

COLLECTED = (
    InstanceStatus.ACTIVE.value,
    InstanceStatus.RESTART_REQUIRED.value,
    InstanceStatus.BACKUP.value,
)
CALL_TIMEOUT = 60.0


def archive_key(instance: Instance, name: str) -> str:
    return f"{instance.project_id}/archive/{instance.id}/{name}"


def oldest_full_start(session: Session, instance_id: str) -> dt.datetime | None:
    """When the instance's oldest completed full backup began (None: it has none)."""
    return session.scalar(
        select(func.min(Backup.started_at)).where(
            Backup.instance_id == instance_id,
            Backup.type == "full",
            Backup.status == BackupStatus.COMPLETED.value,
            Backup.deleted_at.is_(None),
        )
    )


def collect_instance(services: Services, instance: Instance) -> int:
    """Store the instance's newly closed archive files; returns how many were stored."""
    agent = services.agent_for(instance)
    with services.db.session() as session:
        since = oldest_full_start(session, instance.id)
        known = set(
            session.scalars(
                select(ArchiveSegment.name).where(ArchiveSegment.instance_id == instance.id)
            )
        )
    files = agent.list_archive(since is not None, CALL_TIMEOUT)
    if since is None:
        if files:
            agent.remove_archive([name for name, _, _ in files], CALL_TIMEOUT)
        return 0
    stored: list[str] = []
    for name, _size, closed_at in files:
        if name in known:
            stored.append(name)
            continue
        with services.storage.writer(archive_key(instance, name)) as out:
            for chunk in agent.fetch_archive(name, CALL_TIMEOUT):
                out.write(chunk)
        try:
            with services.db.session() as session:
                session.add(
                    ArchiveSegment(
                        id=new_id(), project_id=instance.project_id, instance_id=instance.id,
                        name=name, size_bytes=out.written.size, checksum=out.written.checksum,
                        closed_at=dt.datetime.fromtimestamp(closed_at, dt.UTC).replace(
                            tzinfo=None
                        ),
                    )
                )  # fmt: skip
        except IntegrityError:  # collected at the same time by another round
            logger.info("archive file %s of %s was stored by another round", name, instance.id)
            _record_stored(services, instance, name)
        stored.append(name)
    if stored:
        agent.remove_archive(stored, CALL_TIMEOUT)
    return len(stored) - len(known & set(stored))


def _record_stored(services: Services, instance: Instance, name: str) -> None:
    """Make the row of an archive file that two rounds stored at once describe the object
    stored now. Both rounds published before they added the row, so the object is final;
    it is the last one published, and two encrypted copies of the same bytes differ."""
    size, checksum = services.storage.checksum(archive_key(instance, name))
    with services.db.session() as session:
        session.execute(
            update(ArchiveSegment)
            .where(ArchiveSegment.instance_id == instance.id, ArchiveSegment.name == name)
            .values(size_bytes=size, checksum=checksum)
        )


def prune_instance(services: Services, session: Session, instance: Instance) -> int:
    """Forget archive files closed before the oldest full backup began (they serve none)."""
    since = oldest_full_start(session, instance.id)
    query = select(ArchiveSegment).where(ArchiveSegment.instance_id == instance.id)
    if since is not None:
        query = query.where(ArchiveSegment.closed_at < since)
    old = list(session.scalars(query))
    for segment in old:
        services.storage.delete(archive_key(instance, segment.name))
    if old:
        session.execute(delete(ArchiveSegment).where(ArchiveSegment.id.in_([s.id for s in old])))
    return len(old)


def collect_archives(services: Services) -> int:
    """One round of beat: collect every running instance's archive; returns files stored."""
    formats = [
        (v.datastore, v.name) for d in catalog.DATASTORES.values() for v in d.versions
        if v.archive_format
    ]  # fmt: skip
    with services.db.session() as session:
        instances = [
            i
            for i in session.scalars(
                select(Instance).where(
                    Instance.deleted_at.is_(None),
                    Instance.purpose.is_(None),
                    Instance.status.in_(COLLECTED),
                    Instance.agent_port.is_not(None),
                )
            )
            if (i.datastore, i.datastore_version) in formats
        ]
        for instance in instances:
            session.expunge(instance)
    total = 0
    for instance in instances:
        try:
            total += collect_instance(services, instance)
            with services.db.session() as session:
                prune_instance(services, session, instance)
        except CellarError as exc:
            logger.warning("archive of instance %s not collected: %s", instance.id, exc.message)
    return total
