"""How backups look on the wire (Trove's fields, plus Cellar's checksum and verification)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.views import timestamp
from cellar import catalog
from cellar.errors import NotFound
from cellar.models import Backup

GIB = 1024**3


def backup_view(backup: Backup) -> dict[str, Any]:
    datastore = catalog.DATASTORES.get(backup.datastore)
    version = datastore.version(backup.datastore_version) if datastore else None
    view: dict[str, Any] = {
        "id": backup.id,
        "name": backup.name,
        "description": backup.description,
        "locationRef": backup.location,
        "instance_id": backup.instance_id,
        "created": timestamp(backup.created),
        "updated": timestamp(backup.updated),
        "size": None if backup.size_bytes is None else round(backup.size_bytes / GIB, 4),
        "status": backup.status,
        "parent_id": backup.parent_id,
        "datastore": {
            "type": backup.datastore,
            "version": backup.datastore_version,
            "version_id": version.id if version else None,
        },
        "project_id": backup.project_id,
        "type": backup.type,
        "size_bytes": backup.size_bytes,
        "checksum": backup.checksum,
        "verification": None,
    }
    if backup.fault:
        view["fault"] = backup.fault
    if backup.verified_at is not None:
        view["verification"] = {
            "verified_at": timestamp(backup.verified_at),
            "ok": backup.verify_ok,
            "detail": backup.verify_detail,
            "restore_seconds": backup.verify_seconds,
        }
    return view


def load_backup(session: Session, project_id: str, backup_id: str) -> Backup:
    backup = session.get(Backup, backup_id)
    if backup is None or backup.project_id != project_id or backup.deleted_at is not None:
        raise NotFound(f"backup {backup_id} does not exist in project {project_id}")
    return backup


def children(session: Session, backup: Backup) -> list[str]:
    """Ids of the live incrementals built on ``backup``."""
    return list(
        session.scalars(
            select(Backup.id).where(Backup.parent_id == backup.id, Backup.deleted_at.is_(None))
        )
    )
