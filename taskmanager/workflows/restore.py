"""Restoring backups into a fresh instance: the two steps provisioning adds for it.

``check_backups`` proves every backup of the chain (full first, then its incrementals)
matches its recorded SHA-256 before anything is created, and ``restore_data`` streams
them into the new instance's agent, checking the digest again on the way. Both do
nothing when the instance is not made from a backup.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

from cellar.errors import AgentError
from cellar.models import Backup
from cellar.status import BackupStatus
from taskmanager.backup_storage import BackupMissing, StorageError
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, StepFailed
from taskmanager.workflows.backup import load_backup, storage_key

logger = logging.getLogger(__name__)


def chain(ctx: StepContext) -> list[Backup]:
    """The backups to restore, oldest (the full one) first; empty when not a restore."""
    ids = (ctx.task.params.get("restore") or {}).get("chain") or []
    return [load_backup(ctx, backup_id) for backup_id in ids]


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
    return NEXT


def _checked(ctx: StepContext, backup: Backup, digest: hashlib._Hash) -> Iterator[bytes]:
    for block in ctx.services.storage.reader(storage_key(backup)):
        digest.update(block)
        ctx.keep_lease()
        yield block


def restore_data(ctx: StepContext) -> Decision:
    backups = chain(ctx)
    if not backups:
        return NEXT
    agent, deadline = ctx.agent, ctx.services.settings.backup_deadline
    ctx.session.commit()  # nothing pending while the bytes flow; the lease is kept apart
    for position, backup in enumerate(backups):
        digest = hashlib.sha256()
        try:
            agent.restore(backup.type, position, backup.format or "", _checked(ctx, backup, digest),
                          deadline)  # fmt: skip
        except AgentError as exc:
            raise StepFailed(f"restoring backup {backup.id} failed: {exc.message}") from exc
        except StorageError as exc:
            raise StepFailed(exc.message) from exc
        if digest.hexdigest() != backup.checksum:
            raise StepFailed(f"backup {backup.id} changed while it was restored: checksum mismatch")
        logger.info("restored backup %s (%d of %d)", backup.id, position + 1, len(backups))
    return NEXT
