"""The steps of ``detach``: detach (the replica becomes writable), release_set."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance, ReplicaSet, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager.replica_sets import replica_name
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import (
    SetOf,
    World,
    add_instance,
    add_set,
    add_task,
    change,
    load,
    run,
)


def detaching(world: World) -> tuple[SetOf, str, str]:
    members = add_set(world, replicas=2)
    leaving = members.replicas[0]
    change(world, Instance, leaving, status="DETACH")
    return members, leaving, add_task(world, WorkflowName.DETACH, leaving)


def test_detach_makes_the_replica_writable_and_takes_it_out_of_its_set(world: World) -> None:
    members, leaving, task_id = detaching(world)
    assert run(world, task_id, "detach") is NEXT
    calls = world.agent_of(leaving).replication_calls
    assert [c for c in calls if c[0] == "promote"] == [("promote", 0)]
    instance = load(world, Instance, leaving)
    assert (instance.replica_set_id, instance.replica_of_id) == (None, None)
    assert load(world, Task, task_id).params["set_id"] == members.id


def test_detach_rerun_after_it_left_the_set_promotes_nothing_again(world: World) -> None:
    _members, leaving, task_id = detaching(world)
    run(world, task_id, "detach")
    assert run(world, task_id, "detach") is NEXT
    assert len(world.agent_of(leaving).replication_calls) == 1


def test_detach_fails_and_keeps_the_replica_in_its_set_when_it_stays_read_only(
    world: World,
) -> None:
    members, leaving, task_id = detaching(world)
    world.agent_of(leaving).promote_writable = False
    with pytest.raises(StepFailed, match="the replica did not become writable"):
        run(world, task_id, "detach")
    assert load(world, Instance, leaving).replica_set_id == members.id


def test_detach_refused_by_the_agent_fails_with_its_message(world: World) -> None:
    _members, leaving, task_id = detaching(world)
    world.agent_of(leaving).promote_errors = [AgentError("recovery is paused")]
    with pytest.raises(StepFailed, match="recovery is paused"):
        run(world, task_id, "detach")


def test_release_set_makes_the_primary_and_endpoints_forget_it_and_marks_it_active(
    world: World,
) -> None:
    members, leaving, task_id = detaching(world)
    run(world, task_id, "detach")
    assert run(world, task_id, "release_set") is NEXT
    kept = members.replicas[1]
    enabled = [v for c, v in world.agent_of(members.primary).replication_calls if c == "enable"]
    assert enabled == [([replica_name(kept)], False)]
    _rw, ro = world.endpoints.sets[members.id]
    assert [b.name for b in ro] == [kept]
    assert load(world, Instance, leaving).status == "ACTIVE"


def test_release_set_of_a_set_that_is_gone_still_marks_the_instance_active(world: World) -> None:
    members, leaving, task_id = detaching(world)
    run(world, task_id, "detach")
    change(world, ReplicaSet, members.id, deleted_at=utcnow())
    assert run(world, task_id, "release_set") is NEXT
    assert load(world, Instance, leaving).status == "ACTIVE"
    assert world.endpoints.sets == {}


def test_release_set_of_an_instance_that_was_in_no_set_marks_it_active(world: World) -> None:
    instance_id = add_instance(world, status="DETACH")
    task_id = add_task(world, WorkflowName.DETACH, instance_id)
    assert run(world, task_id, "detach") is NEXT
    assert run(world, task_id, "release_set") is NEXT
    assert load(world, Instance, instance_id).status == "ACTIVE"
    assert world.agent.replication_calls == []
