"""The steps of ``switchover``: stop_writes, promote, follow, finish (run on the candidate)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cellar.errors import AgentError
from cellar.models import Instance, ReplicaSet, ReplicationEvent, Task
from cellar.workflows import WorkflowName
from taskmanager.agent_client import Source
from taskmanager.drivers.docker import container_name
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import (
    SetOf,
    World,
    add_set,
    add_task,
    change,
    load,
    run,
)


def switching(world: World) -> tuple[SetOf, str, str]:
    """A set of a primary and two replicas, the first replica asked to take over."""
    members = add_set(world, replicas=2)
    candidate = members.replicas[0]
    for member in (members.primary, candidate):
        change(world, Instance, member, status="PROMOTE")
    task_id = add_task(world, WorkflowName.SWITCHOVER, candidate, {"set_id": members.id})
    return members, candidate, task_id


def calls(world: World, instance_id: str, name: str) -> list[object]:
    return [value for call, value in world.agent_of(instance_id).replication_calls if call == name]


def event_of(world: World, task_id: str) -> ReplicationEvent:
    return load(world, ReplicationEvent, load(world, Task, task_id).params["event_id"])


def test_stop_writes_stops_the_old_primary_and_remembers_its_position(world: World) -> None:
    members, _candidate, task_id = switching(world)
    assert run(world, task_id, "stop_writes") is NEXT
    assert calls(world, members.primary, "stop_writes") == [None]
    params = load(world, Task, task_id).params
    assert (params["position"], params["old_primary_id"]) == (42, members.primary)
    event = event_of(world, task_id)
    assert (event.kind, event.state, event.old_primary_id) == (
        "switchover",
        "RUNNING",
        members.primary,
    )


def test_stop_writes_run_twice_records_one_event(world: World) -> None:
    _members, _candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    first = load(world, Task, task_id).params["event_id"]
    assert run(world, task_id, "stop_writes") is NEXT
    assert load(world, Task, task_id).params["event_id"] == first
    with world.services.db.session() as session:
        assert len(session.scalars(select(ReplicationEvent)).all()) == 1


def test_stop_writes_returns_next_without_stopping_anything_once_the_candidate_is_primary(
    world: World,
) -> None:
    members, candidate, task_id = switching(world)
    change(world, ReplicaSet, members.id, primary_id=candidate)
    assert run(world, task_id, "stop_writes") is NEXT
    assert calls(world, members.primary, "stop_writes") == []


def test_stop_writes_fails_when_the_candidate_left_its_set(world: World) -> None:
    _members, candidate, task_id = switching(world)
    change(world, Instance, candidate, replica_set_id=None)
    with pytest.raises(StepFailed, match=f"instance {candidate} is not in a replica set any more"):
        run(world, task_id, "stop_writes")


def test_stop_writes_refused_by_the_old_primary_fails_with_its_message(world: World) -> None:
    members, _candidate, task_id = switching(world)
    world.agent_of(members.primary).failing["stop_writes"] = AgentError("read_only is locked")
    with pytest.raises(StepFailed, match="read_only is locked"):
        run(world, task_id, "stop_writes")


def test_promote_promotes_the_candidate_at_the_position_and_moves_the_rw_endpoint(
    world: World,
) -> None:
    members, candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    assert run(world, task_id, "promote") is NEXT
    assert calls(world, candidate, "promote") == [42]
    assert load(world, ReplicaSet, members.id).primary_id == candidate
    assert load(world, Instance, members.primary).replica_of_id == candidate
    assert load(world, Instance, members.replicas[1]).replica_of_id == candidate
    assert load(world, Instance, candidate).replica_of_id is None
    rw, _ro = world.endpoints.sets[members.id]
    assert rw is not None and rw.name == candidate
    event = event_of(world, task_id)
    assert event.new_primary_id == candidate and event.promoted_at is not None


def test_promote_rerun_after_the_promotion_promotes_nothing_again(world: World) -> None:
    members, candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    run(world, task_id, "promote")
    assert run(world, task_id, "promote") is NEXT
    assert calls(world, candidate, "promote") == [42]
    rw, _ro = world.endpoints.sets[members.id]
    assert rw is not None and rw.name == candidate


def test_promote_fails_when_the_candidate_stays_read_only(world: World) -> None:
    members, candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    world.agent_of(candidate).promote_writable = False
    with pytest.raises(StepFailed, match="the candidate did not become writable"):
        run(world, task_id, "promote")
    assert load(world, ReplicaSet, members.id).primary_id == members.primary
    assert world.endpoints.sets == {}


def test_follow_points_every_other_member_at_the_new_primary(world: World) -> None:
    members, candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    run(world, task_id, "promote")
    assert run(world, task_id, "follow") is NEXT
    for member in (members.primary, members.replicas[1]):
        (source,) = calls(world, member, "follow")
        assert isinstance(source, Source) and source.host == container_name(candidate)
    assert calls(world, candidate, "follow") == []
    assert load(world, Task, task_id).params["not_following"] == []


def test_follow_remembers_a_member_that_cannot_follow_and_returns_next(world: World) -> None:
    members, _candidate, task_id = switching(world)
    run(world, task_id, "stop_writes")
    run(world, task_id, "promote")
    world.agent_of(members.replicas[1]).failing["follow"] = AgentError("unavailable")
    assert run(world, task_id, "follow") is NEXT
    assert load(world, Task, task_id).params["not_following"] == [members.replicas[1]]
    assert len(calls(world, members.primary, "follow")) == 1


def test_finish_puts_the_members_back_in_service_and_completes_the_event(world: World) -> None:
    members, candidate, task_id = switching(world)
    for label in ("stop_writes", "promote", "follow"):
        run(world, task_id, label)
    assert run(world, task_id, "finish") is NEXT
    for member in (members.primary, candidate):
        assert load(world, Instance, member).status == "ACTIVE"
    assert event_of(world, task_id).state == "COMPLETED"
    _rw, ro = world.endpoints.sets[members.id]
    assert sorted(b.name for b in ro) == sorted([members.primary, members.replicas[1]])


def test_finish_puts_a_member_that_could_not_follow_in_error(world: World) -> None:
    members, _candidate, task_id = switching(world)
    stuck = members.replicas[1]
    for label in ("stop_writes", "promote"):
        run(world, task_id, label)
    world.agent_of(stuck).failing["follow"] = AgentError("unavailable")
    run(world, task_id, "follow")
    assert run(world, task_id, "finish") is NEXT
    instance = load(world, Instance, stuck)
    assert instance.status == "ERROR"
    assert instance.fault == "could not follow the new primary after a change of primary"
    assert stuck in event_of(world, task_id).detail
    _rw, ro = world.endpoints.sets[members.id]
    assert [b.name for b in ro] == [members.primary]
