"""The steps of ``backup`` (take_backup, finish) and ``delete_backup`` (remove_file)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from sqlalchemy import select

from cellar.backups import start_backup
from cellar.errors import AgentError
from cellar.models import Backup, BackupStrategy, Instance, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager.backup_storage import BackupMissing
from taskmanager.workflow import NEXT, StepFailed
from taskmanager.workflows.backup import storage_key
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    add_task,
    change,
    load,
    run,
    stored_backup,
)

WAL = "000000010000000000000002"


def backing_up(
    world: World,
    instance_id: str | None = None,
    parent_id: str | None = None,
    strategy_id: str | None = None,
) -> tuple[str, str]:
    """A NEW backup of an instance (now showing BACKUP) and its task, as the API starts them."""
    instance_id = instance_id or add_instance(world)
    with world.services.db.session() as session:
        instance = session.get(Instance, instance_id)
        parent = session.get(Backup, parent_id) if parent_id else None
        assert instance is not None
        backup, task = start_backup(
            session, world.services.secrets, instance, name="b", request_id="req-1",
            parent=parent, strategy_id=strategy_id,
        )  # fmt: skip
        return backup.id, task.id


def stored(world: World, backup_id: str) -> bytes:
    return b"".join(world.services.storage.reader(storage_key(load(world, Backup, backup_id))))


def strategy(world: World, instance_id: str, **fields: object) -> str:
    with world.services.db.session() as session:
        row = BackupStrategy(
            project_id="p1", instance_id=instance_id, schedule="0 3 * * *",
            next_run_at=utcnow(), **fields,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def test_take_backup_stores_the_stream_with_its_sha256_and_returns_next(world: World) -> None:
    backup_id, task_id = backing_up(world)
    assert run(world, task_id, "take_backup") is NEXT
    backup = load(world, Backup, backup_id)
    assert backup.status == "COMPLETED"
    assert (backup.size_bytes, backup.format, backup.checkpoint) == (12, "fake", "lsn-1")
    assert backup.checksum == hashlib.sha256(b"page-1page-2").hexdigest()
    assert backup.location and backup.location.startswith("file://")
    assert stored(world, backup_id) == b"page-1page-2"
    assert world.agent.backups == [(backup_id, "full", "")]


def test_take_backup_of_a_completed_backup_returns_next_without_streaming_again(
    world: World,
) -> None:
    backup_id, task_id = backing_up(world)
    run(world, task_id, "take_backup")
    assert run(world, task_id, "take_backup") is NEXT
    assert len(world.agent.backups) == 1
    assert stored(world, backup_id) == b"page-1page-2"


def test_take_backup_of_a_deleted_backup_fails(world: World) -> None:
    backup_id, task_id = backing_up(world)
    change(world, Backup, backup_id, deleted_at=utcnow())
    with pytest.raises(StepFailed, match=f"backup {backup_id} was deleted"):
        run(world, task_id, "take_backup")
    assert world.agent.backups == []


def test_take_backup_on_a_parent_that_is_not_completed_fails_and_streams_nothing(
    world: World,
) -> None:
    instance_id = add_instance(world, datastore="mariadb")
    parent = stored_backup(world, instance_id, status="FAILED")
    _backup_id, task_id = backing_up(world, instance_id, parent_id=parent)
    with pytest.raises(StepFailed, match=f"the parent backup {parent} is FAILED"):
        run(world, task_id, "take_backup")
    assert world.agent.backups == []


def test_take_backup_of_a_mariadb_incremental_streams_from_the_parent_checkpoint(
    world: World,
) -> None:
    instance_id = add_instance(world, datastore="mariadb")
    parent = stored_backup(world, instance_id, checkpoint="binlog.000007:120")
    backup_id, task_id = backing_up(world, instance_id, parent_id=parent)
    assert run(world, task_id, "take_backup") is NEXT
    assert world.agent.backups == [(backup_id, "incremental", "binlog.000007:120")]
    assert load(world, Backup, backup_id).status == "COMPLETED"


def test_take_backup_of_a_postgresql_incremental_stores_a_manifest_of_the_wal_since_the_parent(
    world: World,
) -> None:
    instance_id = add_instance(world)
    parent = stored_backup(world, instance_id)
    world.agent.archive = {WAL: (b"wal-2", time.time())}
    backup_id, task_id = backing_up(world, instance_id, parent_id=parent)
    assert run(world, task_id, "take_backup") is NEXT
    backup = load(world, Backup, backup_id)
    assert (backup.status, backup.format, backup.checkpoint) == ("COMPLETED", "wal-manifest", WAL)
    manifest = json.loads(stored(world, backup_id))
    assert (manifest["parent_id"], [s["name"] for s in manifest["segments"]]) == (parent, [WAL])
    assert world.agent.backups == []  # no physical backup was taken


def test_take_backup_of_a_postgresql_incremental_with_no_new_wal_keeps_the_parent_checkpoint(
    world: World,
) -> None:
    instance_id = add_instance(world)
    parent = stored_backup(world, instance_id, checkpoint="0/3000028")
    backup_id, task_id = backing_up(world, instance_id, parent_id=parent)
    assert run(world, task_id, "take_backup") is NEXT
    backup = load(world, Backup, backup_id)
    assert (backup.status, backup.checkpoint) == ("COMPLETED", "0/3000028")
    assert json.loads(stored(world, backup_id))["segments"] == []


def test_take_backup_with_a_permanent_agent_error_fails_and_stores_nothing(world: World) -> None:
    world.agent.backup_error = AgentError("pg_basebackup: could not connect")
    backup_id, task_id = backing_up(world)
    with pytest.raises(StepFailed, match="pg_basebackup: could not connect"):
        run(world, task_id, "take_backup")
    assert load(world, Backup, backup_id).status == "BUILDING"  # FAILED by the workflow's end
    with pytest.raises(BackupMissing):
        stored(world, backup_id)


def test_take_backup_with_a_retryable_agent_error_raises_it_and_stores_nothing(
    world: World,
) -> None:
    world.agent.backup_error = AgentError("unavailable", retryable=True)
    backup_id, task_id = backing_up(world)
    with pytest.raises(AgentError, match="unavailable") as raised:
        run(world, task_id, "take_backup")
    assert not isinstance(raised.value, StepFailed)
    with pytest.raises(BackupMissing):
        stored(world, backup_id)


def test_take_backup_fails_when_the_stream_ends_before_its_end_marker(world: World) -> None:
    world.agent.backup_end = False
    backup_id, task_id = backing_up(world)
    with pytest.raises(StepFailed, match="ended before its end marker"):
        run(world, task_id, "take_backup")
    with pytest.raises(BackupMissing):
        stored(world, backup_id)


def test_finish_puts_the_instance_back_to_its_earlier_status_and_returns_next(
    world: World,
) -> None:
    instance_id = add_instance(world, status="RESTART_REQUIRED")
    _backup_id, task_id = backing_up(world, instance_id)
    assert load(world, Instance, instance_id).status == "BACKUP"
    assert run(world, task_id, "finish") is NEXT
    assert load(world, Instance, instance_id).status == "RESTART_REQUIRED"


def test_finish_leaves_an_instance_no_longer_in_backup_as_it_is(world: World) -> None:
    instance_id = add_instance(world)
    _backup_id, task_id = backing_up(world, instance_id)
    change(world, Instance, instance_id, status="SHUTDOWN")
    assert run(world, task_id, "finish") is NEXT
    assert load(world, Instance, instance_id).status == "SHUTDOWN"


def test_finish_of_a_scheduled_backup_with_verify_starts_its_verification(world: World) -> None:
    instance_id = add_instance(world)
    strategy_id = strategy(world, instance_id, verify=True)
    backup_id, task_id = backing_up(world, instance_id, strategy_id=strategy_id)
    run(world, task_id, "take_backup")
    assert run(world, task_id, "finish") is NEXT
    with world.services.db.session() as session:
        (verify,) = session.scalars(select(Task).where(Task.workflow == "verify_backup")).all()
        scratch = session.get(Instance, verify.instance_id)
        assert scratch is not None and scratch.purpose == "verify"
        assert verify.params["restore"]["chain"] == [backup_id]


def test_finish_of_a_scheduled_backup_lets_go_what_its_retention_does_not_keep(
    world: World,
) -> None:
    instance_id = add_instance(world)
    strategy_id = strategy(world, instance_id, keep_count=1)
    older = stored_backup(world, instance_id, strategy_id=strategy_id)
    backup_id, task_id = backing_up(world, instance_id, strategy_id=strategy_id)
    run(world, task_id, "take_backup")
    assert run(world, task_id, "finish") is NEXT
    assert load(world, Backup, older).deleted_at is not None
    assert load(world, Backup, backup_id).deleted_at is None
    with world.services.db.session() as session:
        (removal,) = session.scalars(select(Task).where(Task.workflow == "delete_backup")).all()
        assert removal.params == {"backup_id": older}


def test_remove_file_removes_the_backup_from_storage_and_returns_next(world: World) -> None:
    backup_id = stored_backup(world, add_instance(world))
    task_id = add_task(world, WorkflowName.DELETE_BACKUP, None, {"backup_id": backup_id})
    assert run(world, task_id, "remove_file") is NEXT
    assert load(world, Backup, backup_id).deleted_at is not None
    with pytest.raises(BackupMissing):
        stored(world, backup_id)


def test_remove_file_run_twice_leaves_the_world_as_once(world: World) -> None:
    backup_id = stored_backup(world, add_instance(world))
    task_id = add_task(world, WorkflowName.DELETE_BACKUP, None, {"backup_id": backup_id})
    run(world, task_id, "remove_file")
    once = load(world, Backup, backup_id).deleted_at
    assert run(world, task_id, "remove_file") is NEXT
    assert load(world, Backup, backup_id).deleted_at == once


def test_remove_file_of_an_unknown_backup_returns_next(world: World) -> None:
    task_id = add_task(world, WorkflowName.DELETE_BACKUP, None, {"backup_id": "no-such-backup"})
    assert run(world, task_id, "remove_file") is NEXT
