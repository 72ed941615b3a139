"""The steps of ``delete``: stop the other tasks, remove what the instance owned."""

from __future__ import annotations

import datetime as dt

from cellar.errors import AgentError, ComputeError
from cellar.models import Backup, Instance, ReplicaSet, Secret, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager.replica_sets import replica_name
from taskmanager.workflow import NEXT, Nap
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    add_set,
    add_task,
    change,
    load,
    run,
    stored_backup,
)

LIVE = dt.timedelta(seconds=30)


def deleting(world: World, instance_id: str | None = None) -> tuple[str, str]:
    instance_id = instance_id or add_instance(world, status="SHUTDOWN")
    return instance_id, add_task(world, WorkflowName.DELETE, instance_id)


def held(world: World, task_id: str) -> None:
    """Another worker is running a step of ``task_id`` right now."""
    change(world, Task, task_id, lease_until=utcnow() + LIVE, lease_owner="worker-2")


def test_stop_other_tasks_with_no_other_task_returns_next(world: World) -> None:
    _instance_id, task_id = deleting(world)
    assert run(world, task_id, "stop_other_tasks") is NEXT
    assert load(world, Task, task_id).state == "RUNNING"


def test_stop_other_tasks_cancels_an_idle_task_drops_its_secret_and_returns_next(
    world: World,
) -> None:
    instance_id = add_instance(world, status="SHUTDOWN")
    other = add_task(world, WorkflowName.CREATE_USERS, instance_id, secret={"user:al": "pw"})
    _instance_id, task_id = deleting(world, instance_id)
    assert run(world, task_id, "stop_other_tasks") is NEXT
    cancelled = load(world, Task, other)
    assert cancelled.state == "CANCELLED"
    assert cancelled.error == "cancelled: the instance is being deleted"
    with world.services.db.session() as session:
        assert session.get(Secret, other) is None


def test_stop_other_tasks_naps_while_another_task_of_the_instance_holds_a_live_lease(
    world: World,
) -> None:
    instance_id = add_instance(world, status="SHUTDOWN")
    other = add_task(world, WorkflowName.RESTART, instance_id)
    held(world, other)
    _instance_id, task_id = deleting(world, instance_id)
    assert run(world, task_id, "stop_other_tasks") == Nap(0.2)
    assert load(world, Task, other).state == "CANCELLED"  # it stops at its next commit


def test_stop_other_tasks_rerun_naps_until_the_cancelled_step_lets_go_then_returns_next(
    world: World,
) -> None:
    instance_id = add_instance(world, status="SHUTDOWN")
    other = add_task(world, WorkflowName.RESTART, instance_id)
    held(world, other)
    _instance_id, task_id = deleting(world, instance_id)
    run(world, task_id, "stop_other_tasks")
    assert run(world, task_id, "stop_other_tasks") == Nap(0.2)  # cancelled, still mid-step
    change(world, Task, other, lease_until=None, lease_owner=None)
    assert run(world, task_id, "stop_other_tasks") is NEXT


def test_stop_other_tasks_leaves_the_backup_of_a_cancelled_backup_task_failed(
    world: World,
) -> None:
    instance_id = add_instance(world, status="SHUTDOWN")
    backup_id = stored_backup(world, instance_id, status="BUILDING")
    add_task(world, WorkflowName.BACKUP, instance_id, params={"backup_id": backup_id})
    _instance_id, task_id = deleting(world, instance_id)
    assert run(world, task_id, "stop_other_tasks") is NEXT
    backup = load(world, Backup, backup_id)
    assert backup.status == "FAILED"
    assert backup.fault == "the instance was deleted during the backup"


def test_stop_other_tasks_leaves_the_tasks_of_other_instances_alone(world: World) -> None:
    neighbour = add_instance(world)
    theirs = add_task(world, WorkflowName.RESTART, neighbour)
    held(world, theirs)
    _instance_id, task_id = deleting(world)
    assert run(world, task_id, "stop_other_tasks") is NEXT
    assert load(world, Task, theirs).state == "RUNNING"


def test_remove_container_removes_it_and_returns_next(world: World) -> None:
    instance_id, task_id = deleting(world)
    assert run(world, task_id, "remove_container") is NEXT
    assert instance_id not in world.compute.containers


def test_remove_container_rerun_finds_it_gone_and_returns_next(world: World) -> None:
    instance_id, task_id = deleting(world)
    run(world, task_id, "remove_container")
    assert run(world, task_id, "remove_container") is NEXT
    assert world.compute.containers == {}
    assert instance_id in world.compute.volumes  # the volume goes at its own step


def test_leave_replica_set_of_an_instance_in_no_set_returns_next(world: World) -> None:
    _instance_id, task_id = deleting(world)
    assert run(world, task_id, "leave_replica_set") is NEXT
    assert world.endpoints.sets == {}


def test_leave_replica_set_of_a_replica_makes_the_primary_and_endpoints_forget_it(
    world: World,
) -> None:
    members = add_set(world, replicas=2)
    leaving, kept = members.replicas
    change(world, Instance, leaving, status="SHUTDOWN")
    _instance_id, task_id = deleting(world, leaving)
    assert run(world, task_id, "leave_replica_set") is NEXT
    instance = load(world, Instance, leaving)
    assert (instance.replica_set_id, instance.replica_of_id) == (None, None)
    enabled = [v for c, v in world.agent_of(members.primary).replication_calls if c == "enable"]
    assert enabled == [([replica_name(kept)], False)]
    _rw, ro = world.endpoints.sets[members.id]
    assert [b.name for b in ro] == [kept]


def test_leave_replica_set_of_a_replica_returns_next_even_when_the_primary_does_not_answer(
    world: World,
) -> None:
    members = add_set(world, replicas=2)
    leaving, kept = members.replicas
    world.agent_of(members.primary).failing["enable_replication"] = AgentError("unavailable")
    _instance_id, task_id = deleting(world, leaving)
    assert run(world, task_id, "leave_replica_set") is NEXT
    assert load(world, Instance, leaving).replica_set_id is None
    _rw, ro = world.endpoints.sets[members.id]
    assert [b.name for b in ro] == [kept]


def test_leave_replica_set_of_a_primary_with_no_replica_dissolves_the_set(world: World) -> None:
    members = add_set(world, replicas=0)
    world.endpoints.sets[members.id] = (None, [])
    _instance_id, task_id = deleting(world, members.primary)
    assert run(world, task_id, "leave_replica_set") is NEXT
    assert load(world, ReplicaSet, members.id).deleted_at is not None
    assert load(world, Instance, members.primary).replica_set_id is None
    assert world.endpoints.sets == {}


def test_leave_replica_set_rerun_after_the_instance_left_returns_next(world: World) -> None:
    members = add_set(world, replicas=1)
    _instance_id, task_id = deleting(world, members.replicas[0])
    run(world, task_id, "leave_replica_set")
    calls = list(world.agent_of(members.primary).replication_calls)
    assert run(world, task_id, "leave_replica_set") is NEXT
    assert world.agent_of(members.primary).replication_calls == calls


def test_remove_volume_removes_it_and_a_rerun_returns_next(world: World) -> None:
    instance_id, task_id = deleting(world)
    assert run(world, task_id, "remove_volume") is NEXT
    assert instance_id not in world.compute.volumes
    assert run(world, task_id, "remove_volume") is NEXT


def test_remove_network_returns_next_when_the_network_is_removed(world: World) -> None:
    _instance_id, task_id = deleting(world)
    assert run(world, task_id, "remove_network") is NEXT
    assert world.compute.networks == set()


def test_remove_network_still_in_use_keeps_it_and_returns_next(world: World) -> None:
    world.compute.network_error = ComputeError("network p1 has active endpoints")
    _instance_id, task_id = deleting(world)
    assert run(world, task_id, "remove_network") is NEXT
    assert world.compute.networks == {"p1"}


def test_mark_deleted_marks_the_instance_deleted_and_returns_next(world: World) -> None:
    instance_id, task_id = deleting(world)
    assert run(world, task_id, "mark_deleted") is NEXT
    instance = load(world, Instance, instance_id)
    assert instance.status == "SHUTDOWN" and instance.deleted_at is not None
