"""``restorePoint`` of an instance create: which backups to restore, and what they allow."""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import Session

from api import body
from api.backup_views import load_backup, restore_chain
from cellar import catalog
from cellar.errors import InvalidInput
from cellar.models import Backup
from cellar.status import BackupStatus

MAX_VOLUME_GB = catalog.MAX_VOLUME_GB


@dataclasses.dataclass(frozen=True)
class RestorePoint:
    backup: Backup
    chain: list[str]  # backup ids, the full backup first

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
    if value.get("restore_time"):
        raise InvalidInput(
            "restore_time (point-in-time recovery) is not available in this Cellar release; "
            "restore a backup as it was taken by leaving restore_time out"
        )
    backup = load_backup(session, project_id, value["backupRef"])
    if backup.status != BackupStatus.COMPLETED.value:
        raise InvalidInput(f"backup {backup.id} is {backup.status}; only a COMPLETED one restores")
    chain = [b.id for b in restore_chain(session, backup)]
    session.expunge(backup)
    return RestorePoint(backup=backup, chain=chain)
