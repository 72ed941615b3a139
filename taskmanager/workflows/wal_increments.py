"""PostgreSQL incremental backups, made of the archived WAL since the parent.

An incremental backup of PostgreSQL is a manifest: the archive segments (already in
storage, each with its SHA-256) from the parent's start to now, after the current
segment was closed. Restoring a chain replays them after the full backup, to their end.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select

from cellar.models import ArchiveSegment, Backup
from taskmanager import archive
from taskmanager.backup_storage import BackupDamaged
from taskmanager.context import StepContext
from taskmanager.workflow import StepFailed

logger = logging.getLogger(__name__)

FORMAT = "wal-manifest"


def take(ctx: StepContext, backup: Backup, parent: Backup, key: str) -> None:
    """Close and collect the current WAL, then store the manifest of what ``backup`` holds."""
    instance = ctx.instance
    archive.collect_instance(ctx.services, instance)
    segments = list(
        ctx.session.scalars(
            select(ArchiveSegment)
            .where(
                ArchiveSegment.instance_id == instance.id,
                ArchiveSegment.closed_at >= (parent.started_at or parent.created),
            )
            .order_by(ArchiveSegment.name)
        )
    )
    manifest = {
        "instance_id": instance.id,
        "parent_id": parent.id,
        "segments": [
            {"id": s.id, "name": s.name, "size": s.size_bytes, "sha256": s.checksum}
            for s in segments
        ],
    }
    with ctx.services.storage.writer(key, ctx.attempt_tag, ctx.fence) as out:
        out.write(json.dumps(manifest, indent=1).encode())
    backup.size_bytes = out.written.size
    backup.checksum = out.written.checksum
    backup.location = ctx.services.storage.location(key)
    backup.format = FORMAT
    backup.checkpoint = segments[-1].name if segments else parent.checkpoint
    logger.info("incremental backup %s holds %d WAL segments", backup.id, len(segments))


def segment_ids(ctx: StepContext, backup: Backup, key: str) -> list[str]:
    """The archive segments an incremental's manifest names."""
    try:
        manifest = json.loads(b"".join(ctx.services.storage.reader(key)))  # a few kB
        return [str(segment["id"]) for segment in manifest["segments"]]
    except BackupDamaged as exc:
        raise StepFailed(exc.message) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise StepFailed(f"backup {backup.id} holds no readable WAL manifest") from exc
