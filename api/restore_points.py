"""``restorePoint`` of an instance create: which backups to restore, and what they allow."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import body
from api.backup_views import load_backup
from cellar import catalog
from cellar.backups import chain_of
from cellar.errors import InvalidInput
from cellar.models import ArchiveSegment, Backup
from cellar.status import BackupStatus

MAX_VOLUME_GB = catalog.MAX_VOLUME_GB


@dataclasses.dataclass(frozen=True)
class RestorePoint:
    backup: Backup
    chain: list[str]  # backup ids, the full backup first
    archive: list[str] = dataclasses.field(default_factory=list)  # segment ids, in order
    restore_time: str = ""  # RFC 3339, UTC

    def params(self) -> dict[str, object]:
        """What the provision workflow needs to restore this point."""
        found: dict[str, object] = {"chain": self.chain}
        if self.restore_time:
            found.update(archive=self.archive, restore_time=self.restore_time)
        return found

    def fit(self, datastore: object, volume: object) -> tuple[catalog.DatastoreVersion, int]:
        """The datastore version and volume size of the new instance, checked against the
        backup: same engine and version, and a volume at least as large as the source's."""
        version = catalog.DATASTORES[self.backup.datastore].version(self.backup.datastore_version)
        if version is None:
            raise InvalidInput(f"backup {self.backup.id} is of a datastore no longer offered")
        if isinstance(datastore, dict):
            asked = (datastore.get("type"), datastore.get("version"))
            if asked[0] not in (None, "", version.datastore) or asked[1] not in (
                None, "", version.name, version.id,
            ):  # fmt: skip
                raise InvalidInput(
                    f"backup {self.backup.id} is of {version.datastore} {version.name}; "
                    "leave datastore out or name that one"
                )
        if volume is None:
            return version, self.backup.volume_size
        if not isinstance(volume, dict) or "size" not in volume:
            raise InvalidInput(f'volume must be {{"size": 1..{MAX_VOLUME_GB}}} (GB)')
        size = body.integer(volume["size"], "volume.size", 1, MAX_VOLUME_GB)
        if size < self.backup.volume_size:
            raise InvalidInput(
                f"volume.size must be at least {self.backup.volume_size} GB, "
                f"the size of the instance backup {self.backup.id} was taken from"
            )
        return version, size


def restore_point(session: Session, project_id: str, value: object) -> RestorePoint | None:
    """The checked ``restorePoint``, or None when the instance is not made from a backup."""
    if value in (None, {}, ""):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("backupRef"), str):
        raise InvalidInput('restorePoint must be {"backupRef": "<backup id>"}')
    backup = load_backup(session, project_id, value["backupRef"])
    if backup.status != BackupStatus.COMPLETED.value:
        raise InvalidInput(f"backup {backup.id} is {backup.status}; only a COMPLETED one restores")
    chain = [b.id for b in chain_of(session, backup)]
    if not value.get("restore_time"):
        session.expunge(backup)
        return RestorePoint(backup=backup, chain=chain)
    moment = body.moment(value["restore_time"], "restore_time", zone_required=True)
    segments = _segments_to(session, backup, moment)
    session.expunge(backup)
    return RestorePoint(backup=backup, chain=chain, archive=segments,
                        restore_time=moment.isoformat() + "Z")  # fmt: skip


def _segments_to(session: Session, backup: Backup, moment: dt.datetime) -> list[str]:
    """The archive files to replay after ``backup`` to reach ``moment``, checked against
    the instance's recovery window."""
    version = catalog.DATASTORES[backup.datastore].version(backup.datastore_version)
    if version is None or not version.archive_format:
        raise InvalidInput(
            f"{backup.datastore} keeps no archive: restore_time is for PostgreSQL and MariaDB"
        )
    if backup.finished_at is None or moment < backup.finished_at:
        raise InvalidInput(
            f"restore_time {moment.isoformat()}Z is before backup {backup.id} ended "
            f"({stamp(backup.finished_at)}); choose a later time or an earlier backup"
        )
    segments = list(
        session.scalars(
            select(ArchiveSegment)
            .where(
                ArchiveSegment.instance_id == backup.instance_id,
                ArchiveSegment.closed_at >= (backup.started_at or backup.created),
            )
            .order_by(ArchiveSegment.name)
        )
    )
    needed = []
    for segment in segments:
        needed.append(segment.id)
        if segment.closed_at >= moment:
            return needed
    latest = max([s.closed_at for s in segments] + [backup.finished_at])
    raise InvalidInput(
        f"restore_time {moment.isoformat()}Z is after the latest recoverable moment of "
        f"instance {backup.instance_id} ({stamp(latest)}); its archive is collected every "
        "few seconds: try again shortly or choose an earlier time"
    )


def stamp(value: dt.datetime | None) -> str:
    return "unknown" if value is None else value.replace(microsecond=0).isoformat() + "Z"
