"""Restoring backups into a fresh instance: the two steps provisioning adds for it.

``check_backups`` proves every backup of the chain (full first, then its incrementals)
matches its recorded SHA-256 before anything is created, and ``restore_data`` streams
them into the new instance's agent, checking the digest again on the way. The digest is
of the bytes as stored (encrypted, for an encrypted backup); the storage decrypts and
checks each chunk before the agent gets it. Both do nothing when the instance is not
made from a backup.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

from cellar import catalog
from cellar.errors import AgentError
from cellar.models import ArchiveSegment, Backup, Instance
from cellar.status import BackupStatus
from taskmanager.archive import archive_key
from taskmanager.backup_storage import BackupMissing, Digest, StorageError
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, StepFailed
from taskmanager.workflows import wal_increments
from taskmanager.workflows.backup import load_backup, storage_key

logger = logging.getLogger(__name__)


def chain(ctx: StepContext) -> list[Backup]:
    """The backups to restore, oldest (the full one) first; empty when not a restore."""
    ids = (ctx.task.params.get("restore") or {}).get("chain") or []
    return [load_backup(ctx, backup_id) for backup_id in ids]


def archive(ctx: StepContext) -> list[ArchiveSegment]:
    """The archive files to replay after the backups, by name: those of the chain's WAL
    increments, then those a point-in-time restore asked for."""
    ids = [
        segment_id
        for backup in chain(ctx)
        if backup.format == wal_increments.FORMAT
        for segment_id in wal_increments.segment_ids(ctx, backup, storage_key(backup))
    ]
    ids += (ctx.task.params.get("restore") or {}).get("archive") or []
    segments = [ctx.session.get(ArchiveSegment, segment_id) for segment_id in dict.fromkeys(ids)]
    if any(segment is None for segment in segments):
        raise StepFailed("archive files of this restore were pruned; choose a later backup")
    return sorted((s for s in segments if s is not None), key=lambda s: s.name)


def _source(ctx: StepContext, segment: ArchiveSegment) -> Instance:
    found = ctx.session.get(Instance, segment.instance_id)
    if found is None:
        raise StepFailed(f"the instance of archive file {segment.name} is unknown")
    return found


def check_backups(ctx: StepContext) -> Decision:
    for backup in chain(ctx):
        if backup.status != BackupStatus.COMPLETED.value or not backup.checksum:
            raise StepFailed(f"backup {backup.id} is {backup.status}, not COMPLETED")
        try:
            size, checksum = ctx.services.storage.checksum(storage_key(backup))
        except BackupMissing as exc:
            raise StepFailed(f"backup {backup.id} cannot be restored: {exc.message}") from exc
        except StorageError as exc:
            raise StepFailed(exc.message) from exc
        if (size, checksum) != (backup.size_bytes, backup.checksum):
            raise StepFailed(
                f"backup {backup.id} is damaged: the stored file ({size} bytes) does not match "
                f"the SHA-256 recorded when it was taken ({backup.size_bytes} bytes); "
                "nothing was restored"
            )
        ctx.keep_lease()
    for segment in archive(ctx):
        key = archive_key(_source(ctx, segment), segment.name)
        try:
            size, checksum = ctx.services.storage.checksum(key)
        except StorageError as exc:
            raise StepFailed(
                f"archive file {segment.name} cannot be restored: {exc.message}"
            ) from exc
        if (size, checksum) != (segment.size_bytes, segment.checksum):
            raise StepFailed(f"archive file {segment.name} is damaged: its SHA-256 does not match")
    return NEXT


def _stored(
    ctx: StepContext, key: str, digest: Digest, failed: list[StorageError]
) -> Iterator[bytes]:
    """The bytes of ``key`` for an agent, ``digest`` fed the bytes as stored (what the
    recorded checksum covers). A storage error also goes to ``failed``: the agent call
    that streams them may report it as a failure of its own (gRPC reads the stream)."""
    try:
        for block in ctx.services.storage.reader(key, digest):
            ctx.keep_lease()
            yield block
    except StorageError as exc:
        failed.append(exc)
        raise


def restore_data(ctx: StepContext) -> Decision:
    backups = chain(ctx)
    if not backups:
        return NEXT
    agent, deadline = ctx.agent, ctx.services.settings.backup_deadline
    ctx.session.commit()  # nothing pending while the bytes flow; the lease is kept apart
    physical = [b for b in backups if b.format != wal_increments.FORMAT]
    for position, backup in enumerate(physical):
        digest, failed = hashlib.sha256(), list[StorageError]()
        blocks = _stored(ctx, storage_key(backup), digest, failed)
        try:
            agent.restore(backup.type, position, backup.format or "", blocks, deadline)
        except AgentError as exc:
            if failed:
                raise StepFailed(failed[0].message) from failed[0]
            raise StepFailed(f"restoring backup {backup.id} failed: {exc.message}") from exc
        except StorageError as exc:
            raise StepFailed(exc.message) from exc
        if digest.hexdigest() != backup.checksum:
            raise StepFailed(f"backup {backup.id} changed while it was restored: checksum mismatch")
        logger.info("restored backup %s (%d of %d)", backup.id, position + 1, len(backups))
    _restore_archive(ctx, len(physical))
    return NEXT


def _restore_archive(ctx: StepContext, position: int) -> None:
    """Stream the archive files of a point-in-time restore after the backups."""
    instance, agent = ctx.instance, ctx.agent
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    form = version.archive_format if version else ""
    for offset, segment in enumerate(archive(ctx)):
        digest, failed = hashlib.sha256(), list[StorageError]()
        key = archive_key(_source(ctx, segment), segment.name)
        blocks = _stored(ctx, key, digest, failed)
        try:
            agent.restore("archive", position + offset, form, blocks,
                          ctx.services.settings.backup_deadline, name=segment.name)  # fmt: skip
        except AgentError as exc:
            if failed:
                raise StepFailed(failed[0].message) from failed[0]
            raise StepFailed(
                f"replaying archive file {segment.name} failed: {exc.message}"
            ) from exc
        except StorageError as exc:
            raise StepFailed(exc.message) from exc
        if digest.hexdigest() != segment.checksum:
            raise StepFailed(f"archive file {segment.name} changed while it was restored")
