"""The publish_log and discard_log steps: parts in backup storage, and runs that repeat."""

from __future__ import annotations

import json

import pytest

from cellar.errors import AgentError
from cellar.models import LogPublication
from cellar.workflows import WorkflowName
from taskmanager.backup_crypto import DataKeys, EncryptedStorage
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import PROJECT, World, add_instance, add_task, run

LOG = "postgresql.log"


def publication(world: World, instance_id: str) -> LogPublication | None:
    with world.services.db.session() as session:
        row = session.get(LogPublication, (instance_id, LOG))
        if row is not None:
            session.expunge(row)
        return row


def publish(world: World, instance_id: str) -> None:
    task_id = add_task(world, WorkflowName.PUBLISH_LOG, instance_id, {"name": LOG})
    assert run(world, task_id, "publish_log") is NEXT


def stored(world: World, key: str) -> bytes:
    return b"".join(world.services.storage.reader(key))


def test_publish_stores_the_log_and_counts_it(world: World) -> None:
    instance_id = add_instance(world)
    world.agent.engine_logs[LOG] = b"one\ntwo\n"
    publish(world, instance_id)
    row = publication(world, instance_id)
    assert row is not None and (row.published, row.parts) == (8, 1)
    prefix = f"{PROJECT}/{instance_id}-logs/{LOG}/"
    assert stored(world, f"{prefix}000001") == b"one\ntwo\n"
    assert row.location is not None and row.location.endswith(prefix)
    meta = json.loads(stored(world, f"{prefix}metafile"))
    assert meta["parts"][0]["size"] == 8 and len(meta["parts"][0]["sha256"]) == 64


def test_publish_with_nothing_new_stores_no_part(world: World) -> None:
    instance_id = add_instance(world)
    publish(world, instance_id)
    publish(world, instance_id)
    row = publication(world, instance_id)
    assert row is not None and row.parts == 1


def test_a_rerun_after_a_crash_stores_the_same_part_again(world: World) -> None:
    """The worker died after storing part 1 but before its commit: the row still says 0."""
    instance_id = add_instance(world)
    world.agent.engine_logs[LOG] = b"abc\n"
    task_id = add_task(world, WorkflowName.PUBLISH_LOG, instance_id, {"name": LOG})
    world.agent.failing["list_logs"] = AgentError("gone", retryable=True)
    with pytest.raises(AgentError):
        run(world, task_id, "publish_log")
    del world.agent.failing["list_logs"]
    assert run(world, task_id, "publish_log") is NEXT
    run(world, add_task(world, WorkflowName.PUBLISH_LOG, instance_id, {"name": LOG}), "publish_log")
    row = publication(world, instance_id)
    assert row is not None and (row.published, row.parts) == (4, 1)


def test_a_log_the_agent_no_longer_has_fails_the_step(world: World) -> None:
    instance_id = add_instance(world)
    task_id = add_task(world, WorkflowName.PUBLISH_LOG, instance_id, {"name": "gone.log"})
    with pytest.raises(StepFailed, match=r"has no log 'gone\.log'"):
        run(world, task_id, "publish_log")


def test_discard_removes_the_parts_and_the_row(world: World) -> None:
    instance_id = add_instance(world)
    publish(world, instance_id)
    task_id = add_task(world, WorkflowName.DISCARD_LOG, instance_id, {"name": LOG})
    assert run(world, task_id, "discard_log") is NEXT
    assert publication(world, instance_id) is None
    root = world.services.settings.backups_dir
    assert list(root.rglob(f"{instance_id}-logs/*/0*")) == []
    again = add_task(world, WorkflowName.DISCARD_LOG, instance_id, {"name": LOG})
    assert run(world, again, "discard_log") is NEXT


def test_publish_and_discard_with_encrypted_storage(world: World) -> None:
    """Each stored object records its data key in a transaction of its own: the step
    must hold none open meanwhile (SQLite would make that write wait, then fail)."""
    world.services.storage = EncryptedStorage(
        world.services.storage, DataKeys(world.services.db, world.services.secrets)
    )
    instance_id = add_instance(world)
    world.agent.engine_logs[LOG] = b"sealed line\n"
    publish(world, instance_id)
    prefix = f"{PROJECT}/{instance_id}-logs/{LOG}/"
    assert stored(world, f"{prefix}000001") == b"sealed line\n"
    raw = (world.services.settings.backups_dir / f"{prefix}000001").read_bytes()
    assert b"sealed line" not in raw
    task_id = add_task(world, WorkflowName.DISCARD_LOG, instance_id, {"name": LOG})
    assert run(world, task_id, "discard_log") is NEXT
    assert publication(world, instance_id) is None
