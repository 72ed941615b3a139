"""Backups: the agent streams a physical backup, the worker stores it with its checksum.

The instance shows BACKUP while its backup runs and goes back to its earlier status
after, whatever happens. A backup always ends COMPLETED or FAILED: a worker killed mid
stream loses its lease and the step runs again from the start (the partial file is
never kept under the backup's name); past ``CELLAR_BACKUP_DEADLINE`` it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from sqlalchemy.orm import Session

from cellar import catalog
from cellar.backups import chain_of, start_verify
from cellar.errors import AgentError
from cellar.models import Backup, BackupStrategy, Task, utcnow
from cellar.pipeline import write_behind
from cellar.status import BackupStatus, InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager import backup_jobs
from taskmanager.agent_client import BackupEnd
from taskmanager.backup_storage import StorageError
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows import wal_increments

logger = logging.getLogger(__name__)


def storage_key(backup: Backup) -> str:
    return f"{backup.project_id}/{backup.id}"


def load_backup(ctx: StepContext, backup_id: str) -> Backup:
    backup = ctx.session.get(Backup, backup_id)
    if backup is None or backup.deleted_at is not None:
        raise StepFailed(f"backup {backup_id} was deleted")
    return backup


def take_backup(ctx: StepContext) -> Decision:
    backup = load_backup(ctx, ctx.task.params["backup_id"])
    if backup.status == BackupStatus.COMPLETED.value:
        return NEXT
    parent_checkpoint = ""
    if backup.parent_id:
        parent = load_backup(ctx, backup.parent_id)
        if parent.status != BackupStatus.COMPLETED.value or not parent.checkpoint:
            raise StepFailed(f"the parent backup {parent.id} is {parent.status}")
        parent_checkpoint = parent.checkpoint
    backup.status = BackupStatus.BUILDING.value
    backup.started_at = backup.started_at or utcnow()
    backup.fault = None
    ctx.session.commit()  # BUILDING is visible while the bytes flow; the lease is kept apart
    if backup.parent_id and _increments_by_wal(backup):
        try:
            wal_increments.take(ctx, backup, parent, storage_key(backup))
        except StorageError as exc:
            raise StepFailed(exc.message) from exc
        backup.status = BackupStatus.COMPLETED.value
        backup.finished_at = utcnow()
        return NEXT
    key, kind, agent = storage_key(backup), backup.type, ctx.agent
    deadline = ctx.services.settings.backup_deadline
    try:
        ends: list[BackupEnd] = []
        with ctx.services.storage.writer(key, ctx.attempt_tag, ctx.fence) as out:
            stream = agent.backup(backup.id, kind, parent_checkpoint, deadline)
            write_behind(_data_of(ctx, stream, ends), out.write)
            if not ends:
                raise StepFailed("the agent's backup stream ended before its end marker")
        end = ends[-1]
    except AgentError as exc:
        if exc.retryable:
            raise
        raise StepFailed(exc.message) from exc
    except StorageError as exc:
        raise StepFailed(exc.message) from exc
    backup.size_bytes = out.written.size
    backup.checksum = out.written.checksum
    backup.location = ctx.services.storage.location(key)
    backup.format = end.format
    backup.checkpoint = end.checkpoint
    backup.status = BackupStatus.COMPLETED.value
    backup.finished_at = utcnow()
    logger.info("backup %s completed: %d bytes, sha256 %s", backup.id, backup.size_bytes,
                backup.checksum)  # fmt: skip
    return NEXT


def _data_of(
    ctx: StepContext, stream: Iterable[bytes | BackupEnd], ends: list[BackupEnd]
) -> Iterator[bytes]:
    """The backup's bytes as they arrive; its end marker goes to ``ends``."""
    for piece in stream:
        if isinstance(piece, BackupEnd):
            ends.append(piece)
        else:
            yield piece
        ctx.keep_lease()


def _increments_by_wal(backup: Backup) -> bool:
    """True where an incremental backup is the archived WAL since its parent (PostgreSQL)."""
    version = catalog.DATASTORES[backup.datastore].version(backup.datastore_version)
    return version is not None and version.archive_format == "wal"


def finish(ctx: StepContext) -> Decision:
    """Back to service; for a scheduled backup, verify it if asked and apply retention."""
    _restore_status(ctx)
    backup = ctx.session.get(Backup, ctx.task.params["backup_id"])
    if backup is None or backup.strategy_id is None:
        return NEXT
    strategy = ctx.session.get(BackupStrategy, backup.strategy_id)
    if strategy is None:
        return NEXT
    ctx.started += backup_jobs.prune(ctx.services, ctx.session, strategy)
    if strategy.verify and backup.deleted_at is None:
        chain = [b.id for b in chain_of(ctx.session, backup)]
        box, request_id = ctx.services.secrets, ctx.task.request_id
        ctx.started.append(start_verify(ctx.session, box, backup, chain, request_id))
    return NEXT


def _restore_status(ctx: StepContext) -> None:
    instance = ctx.instance
    if instance.status == InstanceStatus.BACKUP.value:
        instance.status = ctx.task.params.get("previous_status") or InstanceStatus.ACTIVE.value


def _failed(ctx: StepContext, reason: str) -> None:
    backup = ctx.session.get(Backup, ctx.task.params["backup_id"])
    if backup is not None and backup.status != BackupStatus.COMPLETED.value:
        backup.status = BackupStatus.FAILED.value
        backup.fault = reason
        backup.finished_at = utcnow()
    _restore_status(ctx)


def abandon(session: Session, task: Task, reason: str) -> None:
    """A cancelled backup task (its instance is being deleted) leaves its backup FAILED."""
    if task.workflow != WorkflowName.BACKUP:
        return
    backup = session.get(Backup, task.params.get("backup_id"))
    if backup is not None and backup.status in (
        BackupStatus.NEW.value,
        BackupStatus.BUILDING.value,
    ):
        backup.status = BackupStatus.FAILED.value
        backup.fault = reason
        backup.finished_at = utcnow()


BACKUP = Workflow(
    WorkflowName.BACKUP,
    (
        Step("take_backup", take_backup, "backup_deadline", "streaming the backup to storage"),
        Step("finish", finish, 30, "returning the instance to service"),
    ),
    on_failure=_failed,
)


def remove_file(ctx: StepContext) -> Decision:
    backup = ctx.session.get(Backup, ctx.task.params["backup_id"])
    if backup is not None:
        ctx.services.storage.delete(storage_key(backup))
        backup.deleted_at = backup.deleted_at or utcnow()
    return NEXT


DELETE_BACKUP = Workflow(
    WorkflowName.DELETE_BACKUP,
    (Step("remove_file", remove_file, 120, "removing the backup from storage"),),
    waits_for_earlier=False,
)
