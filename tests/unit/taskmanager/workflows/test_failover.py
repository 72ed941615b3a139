"""The steps of ``failover`` (run on the dead primary): elect, fence, promote, follow, finish."""

from __future__ import annotations

import dataclasses

import pytest

from cellar.errors import AgentError, ComputeError
from cellar.models import Instance, ReplicaSet, ReplicationEvent, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager.agent_client import Source
from taskmanager.drivers.docker import container_name
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.fakes import replication_of
from tests.unit.taskmanager.workflows.support import (
    SetOf,
    World,
    add_set,
    add_task,
    change,
    load,
    run,
)


def failing_over(world: World, kind: str = "failover") -> tuple[SetOf, str]:
    """A set whose primary is down: replica 0 has received up to 5, replica 1 up to 9."""
    members = add_set(world, replicas=2)
    change(world, Instance, members.primary, status="EJECT", operating_status="ERROR")
    for replica, position in zip(members.replicas, (5, 9), strict=True):
        state = replication_of("replica", position_value=position, connected=False)
        world.agent_of(replica).replication_state = dataclasses.replace(
            state, lag_bytes=1200, lag_seconds=2.5
        )
    task_id = add_task(
        world, WorkflowName.FAILOVER, members.primary, {"set_id": members.id, "kind": kind}
    )
    return members, task_id


def params(world: World, task_id: str) -> dict[str, object]:
    return dict(load(world, Task, task_id).params)


def promotes(world: World, instance_id: str) -> list[object]:
    return [v for c, v in world.agent_of(instance_id).replication_calls if c == "promote"]


def test_elect_chooses_the_replica_that_received_the_most_and_stops_nothing(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    assert run(world, task_id, "elect") is NEXT
    found = params(world, task_id)
    assert (found["candidate_id"], found["candidate_position"]) == (members.replicas[1], 9)
    event = load(world, ReplicationEvent, str(found["event_id"]))
    assert (event.kind, event.old_primary_id, event.state) == (
        "failover",
        members.primary,
        "RUNNING",
    )
    assert (event.behind_bytes, event.behind_seconds) == (1200, 2.5)
    assert event.detail == "promoted at position 9"
    assert world.compute.calls == []


def test_elect_records_the_kind_of_failover_it_was_asked_for(world: World) -> None:
    _members, task_id = failing_over(world, kind="automatic_failover")
    run(world, task_id, "elect")
    event = load(world, ReplicationEvent, str(params(world, task_id)["event_id"]))
    assert event.kind == "automatic_failover"


def test_elect_passes_over_a_replica_that_is_not_in_service(world: World) -> None:
    members, task_id = failing_over(world)
    change(world, Instance, members.replicas[1], status="BUILD")
    assert run(world, task_id, "elect") is NEXT
    assert params(world, task_id)["candidate_id"] == members.replicas[0]


def test_elect_passes_over_a_replica_that_does_not_answer(world: World) -> None:
    members, task_id = failing_over(world)
    world.agent_of(members.replicas[1]).replication_error = AgentError("unavailable")
    assert run(world, task_id, "elect") is NEXT
    assert params(world, task_id)["candidate_id"] == members.replicas[0]


def test_elect_raises_step_failed_when_no_replica_answers_and_stops_nothing(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    for replica in members.replicas:
        world.agent_of(replica).replication_error = AgentError("unavailable", retryable=True)
    with pytest.raises(StepFailed, match="no replica answers: there is nothing to promote"):
        run(world, task_id, "elect")
    assert world.compute.calls == [] and world.compute.stopped == set()
    assert all(promotes(world, r) == [] for r in members.replicas)
    assert load(world, ReplicaSet, members.id).primary_id == members.primary


def test_elect_returns_next_without_electing_when_the_primary_already_changed(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    change(world, ReplicaSet, members.id, primary_id=members.replicas[0])
    assert run(world, task_id, "elect") is NEXT
    assert "candidate_id" not in params(world, task_id)
    assert "event_id" not in params(world, task_id)


def test_elect_fails_when_the_replica_set_is_gone(world: World) -> None:
    members, _task_id = failing_over(world)
    task_id = add_task(world, WorkflowName.FAILOVER, members.primary, {"set_id": "gone"})
    with pytest.raises(StepFailed, match="the replica set is gone"):
        run(world, task_id, "elect")


def test_fence_stops_the_old_primary_and_remembers_it(world: World) -> None:
    members, task_id = failing_over(world)
    run(world, task_id, "elect")
    assert run(world, task_id, "fence") is NEXT
    assert world.compute.stopped == {members.primary}
    assert params(world, task_id)["fenced"] is True


def test_fence_returns_next_without_stopping_anything_when_the_primary_already_changed(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    change(world, ReplicaSet, members.id, primary_id=members.replicas[1])
    assert run(world, task_id, "fence") is NEXT
    assert world.compute.calls == [] and world.compute.stopped == set()
    assert "fenced" not in params(world, task_id)


def test_fence_fails_when_the_old_primary_cannot_be_stopped(world: World) -> None:
    world.compute.stop_error = ComputeError("docker daemon unreachable")
    _members, task_id = failing_over(world)
    run(world, task_id, "elect")
    with pytest.raises(StepFailed, match="cannot fence the old primary: docker daemon"):
        run(world, task_id, "fence")
    assert "fenced" not in params(world, task_id)


def test_promote_makes_the_candidate_primary_and_takes_the_old_primary_out(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    chosen = members.replicas[1]
    for label in ("elect", "fence"):
        run(world, task_id, label)
    assert run(world, task_id, "promote") is NEXT
    assert promotes(world, chosen) == [9]
    assert load(world, ReplicaSet, members.id).primary_id == chosen
    assert load(world, Instance, members.replicas[0]).replica_of_id == chosen
    old = load(world, Instance, members.primary)
    assert (old.replica_set_id, old.status) == (None, "SHUTDOWN")
    assert old.fault == f"stopped by a failover: replica {chosen} took over as the primary"
    rw, ro = world.endpoints.sets[members.id]
    assert rw is not None and rw.name == chosen
    assert [b.name for b in ro] == [members.replicas[0]]


def test_promote_promotes_at_once_when_the_candidate_cannot_apply_all_it_received(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    chosen = members.replicas[1]
    run(world, task_id, "elect")
    world.agent_of(chosen).promote_errors = [AgentError("timed out replaying WAL")]
    assert run(world, task_id, "promote") is NEXT
    assert promotes(world, chosen) == [9, 0]
    assert load(world, ReplicaSet, members.id).primary_id == chosen


def test_promote_raises_a_retryable_agent_error_to_be_retried(world: World) -> None:
    members, task_id = failing_over(world)
    run(world, task_id, "elect")
    error = AgentError("unavailable", retryable=True)
    world.agent_of(members.replicas[1]).promote_errors = [error]
    with pytest.raises(AgentError, match="unavailable") as raised:
        run(world, task_id, "promote")
    assert not isinstance(raised.value, StepFailed)
    assert load(world, ReplicaSet, members.id).primary_id == members.primary


def test_promote_fails_when_the_candidate_stays_read_only(world: World) -> None:
    members, task_id = failing_over(world)
    run(world, task_id, "elect")
    world.agent_of(members.replicas[1]).promote_writable = False
    with pytest.raises(StepFailed, match=f"replica {members.replicas[1]} did not become writable"):
        run(world, task_id, "promote")
    assert load(world, Instance, members.primary).replica_set_id == members.id


def test_promote_fails_when_the_chosen_replica_was_deleted(world: World) -> None:
    members, task_id = failing_over(world)
    run(world, task_id, "elect")
    change(world, Instance, members.replicas[1], deleted_at=utcnow())
    with pytest.raises(StepFailed, match="the chosen replica was deleted"):
        run(world, task_id, "promote")


def test_promote_of_a_primary_replaced_by_another_failover_promotes_nothing(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    change(world, ReplicaSet, members.id, primary_id=members.replicas[0])
    for label in ("elect", "fence"):
        assert run(world, task_id, label) is NEXT
    assert run(world, task_id, "promote") is NEXT
    assert promotes(world, members.replicas[1]) == []
    assert load(world, Instance, members.primary).fault is None


def test_promote_rerun_after_the_promotion_promotes_nothing_again(world: World) -> None:
    members, task_id = failing_over(world)
    run(world, task_id, "elect")
    run(world, task_id, "promote")
    assert run(world, task_id, "promote") is NEXT
    assert promotes(world, members.replicas[1]) == [9]
    assert load(world, ReplicaSet, members.id).primary_id == members.replicas[1]


def test_follow_points_the_other_replicas_at_the_new_primary_not_the_old_one(
    world: World,
) -> None:
    members, task_id = failing_over(world)
    for label in ("elect", "fence", "promote"):
        run(world, task_id, label)
    assert run(world, task_id, "follow") is NEXT
    follows = world.agent_of(members.replicas[0]).replication_calls
    ((_call, source),) = [c for c in follows if c[0] == "follow"]
    assert isinstance(source, Source) and source.host == container_name(members.replicas[1])
    old_calls = world.agent_of(members.primary).replication_calls
    assert [c for c in old_calls if c[0] == "follow"] == []
    assert params(world, task_id)["not_following"] == []


def test_finish_completes_the_event_and_keeps_the_new_set_in_service(world: World) -> None:
    members, task_id = failing_over(world)
    for label in ("elect", "fence", "promote", "follow"):
        run(world, task_id, label)
    assert run(world, task_id, "finish") is NEXT
    event = load(world, ReplicationEvent, str(params(world, task_id)["event_id"]))
    assert (event.state, event.new_primary_id) == ("COMPLETED", members.replicas[1])
    assert all(load(world, Instance, r).status == "ACTIVE" for r in members.replicas)
    assert load(world, Instance, members.primary).status == "SHUTDOWN"
