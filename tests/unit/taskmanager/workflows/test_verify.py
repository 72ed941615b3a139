"""The steps of ``verify_backup``: restore into a scratch instance, check it, remove it."""

from __future__ import annotations

import pytest

from cellar.backups import start_verify
from cellar.errors import AgentError
from cellar.models import Backup, Instance, Task, utcnow
from taskmanager.workflow import NEXT, StepFailed
from taskmanager.workflows.backup import storage_key
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    change,
    load,
    place_container,
    run,
    stored_backup,
)


def verifying(world: World, data: bytes = b"the backup's bytes") -> tuple[str, str, str]:
    """A completed backup and the verification of it: (backup, scratch instance, task)."""
    backup_id = stored_backup(world, add_instance(world), data)
    with world.services.db.session() as session:
        backup = session.get(Backup, backup_id)
        assert backup is not None
        task = start_verify(session, world.services.secrets, backup, [backup_id], "req-1")
        session.flush()
        assert task.instance_id is not None
        return backup_id, task.instance_id, task.id


def with_scratch_running(world: World, scratch_id: str) -> None:
    place_container(world, load(world, Instance, scratch_id))


def test_check_backups_returns_next_when_the_backup_matches_its_sha256(world: World) -> None:
    _backup_id, _scratch_id, task_id = verifying(world)
    assert run(world, task_id, "check_backups") is NEXT


def test_check_backups_of_a_damaged_backup_fails_before_a_scratch_is_made(world: World) -> None:
    backup_id, _scratch_id, task_id = verifying(world)
    with world.services.storage.writer(storage_key(load(world, Backup, backup_id))) as out:
        out.write(b"rot")
    with pytest.raises(StepFailed, match=f"backup {backup_id} is damaged"):
        run(world, task_id, "check_backups")
    assert world.compute.calls == []


def test_create_volume_makes_the_network_and_the_scratch_volume_and_returns_next(
    world: World,
) -> None:
    _backup_id, scratch_id, task_id = verifying(world)
    assert run(world, task_id, "create_volume") is NEXT
    assert world.compute.calls == ["ensure_network", "ensure_volume"]
    assert scratch_id in world.compute.volumes and scratch_id not in world.compute.containers


def test_start_container_starts_the_scratch_and_records_its_ports(world: World) -> None:
    _backup_id, scratch_id, task_id = verifying(world)
    assert run(world, task_id, "start_container") is NEXT
    assert world.compute.containers[scratch_id].memory_mb == 512
    assert load(world, Instance, scratch_id).agent_port == 40001


def test_wait_for_agent_returns_next_once_the_agent_serves(world: World) -> None:
    _backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "wait_for_agent") is NEXT


def test_wait_for_agent_fails_when_the_container_disappeared_while_starting(
    world: World,
) -> None:
    world.agent.serving = False
    _backup_id, _scratch_id, task_id = verifying(world)  # no container: it is gone
    with pytest.raises(StepFailed, match="the instance's container disappeared while starting"):
        run(world, task_id, "wait_for_agent")


def test_restore_data_restores_the_backup_into_the_scratch_and_returns_next(
    world: World,
) -> None:
    _backup_id, scratch_id, task_id = verifying(world, b"all the rows")
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "restore_data") is NEXT
    assert world.agent.restores == [("full", 0, "tar", b"all the rows")]


def test_prepare_starts_the_restored_engine_and_leaves_the_scratch_in_build(
    world: World,
) -> None:
    _backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "prepare") is NEXT  # not the last step of a verification
    assert world.agent.restored_prepares == 1
    assert load(world, Instance, scratch_id).status == "BUILD"


def test_check_consistency_records_a_good_result_on_the_backup_and_returns_next(
    world: World,
) -> None:
    backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "check_consistency") is NEXT
    backup = load(world, Backup, backup_id)
    assert (backup.verify_ok, backup.verify_detail) == (True, "every table is fine")
    assert backup.verified_at is not None
    assert backup.verify_seconds is not None and backup.verify_seconds >= 0


def test_check_consistency_records_a_bad_result_and_still_returns_next(world: World) -> None:
    world.agent.consistency = (False, "table orders: 3 corrupt pages")
    backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "check_consistency") is NEXT
    backup = load(world, Backup, backup_id)
    assert (backup.verify_ok, backup.verify_detail) == (False, "table orders: 3 corrupt pages")


def test_check_consistency_records_a_permanent_checker_error_as_a_bad_result(
    world: World,
) -> None:
    world.agent.failing["check_consistency"] = AgentError("amcheck is not installed")
    backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    assert run(world, task_id, "check_consistency") is NEXT
    backup = load(world, Backup, backup_id)
    assert (backup.verify_ok, backup.verify_detail) == (False, "amcheck is not installed")


def test_check_consistency_raises_a_retryable_agent_error_and_records_nothing(
    world: World,
) -> None:
    world.agent.failing["check_consistency"] = AgentError("unavailable", retryable=True)
    backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    with pytest.raises(AgentError, match="unavailable"):
        run(world, task_id, "check_consistency")
    assert load(world, Backup, backup_id).verified_at is None


def test_check_consistency_of_a_backup_deleted_meanwhile_fails(world: World) -> None:
    backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    change(world, Backup, backup_id, deleted_at=utcnow())
    with pytest.raises(StepFailed, match=f"backup {backup_id} was deleted"):
        run(world, task_id, "check_consistency")


def test_removing_the_scratch_takes_container_volume_and_row_each_returning_next(
    world: World,
) -> None:
    _backup_id, scratch_id, task_id = verifying(world)
    with_scratch_running(world, scratch_id)
    for label in ("remove_container", "remove_volume", "remove_network", "mark_deleted"):
        assert run(world, task_id, label) is NEXT, label
    assert scratch_id not in world.compute.containers
    assert scratch_id not in world.compute.volumes
    assert load(world, Instance, scratch_id).deleted_at is not None
    assert load(world, Task, task_id).state == "RUNNING"  # run() applies no decision
