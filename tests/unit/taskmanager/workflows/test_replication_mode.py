"""The step of ``replication_mode``: apply_mode, on the set's primary."""

from __future__ import annotations

from typing import Any

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.replica_sets import replica_name
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    add_set,
    add_task,
    change,
    run,
)


def enabled(world: World, primary_id: str) -> list[Any]:
    calls = world.agent_of(primary_id).replication_calls
    return [value for call, value in calls if call == "enable"]


def test_apply_mode_of_a_sync_set_makes_the_primary_wait_for_its_replicas(world: World) -> None:
    members = add_set(world, replicas=2, mode="sync")
    task_id = add_task(world, WorkflowName.REPLICATION_MODE, members.primary)
    assert run(world, task_id, "apply_mode") is NEXT
    names = sorted(replica_name(r) for r in members.replicas)
    assert [(sorted(n), s) for n, s in enabled(world, members.primary)] == [(names, True)]


def test_apply_mode_of_an_async_set_stops_the_primary_waiting(world: World) -> None:
    members = add_set(world, replicas=1, mode="async")
    task_id = add_task(world, WorkflowName.REPLICATION_MODE, members.primary)
    assert run(world, task_id, "apply_mode") is NEXT
    assert enabled(world, members.primary) == [([replica_name(members.replicas[0])], False)]


def test_apply_mode_of_a_sync_set_with_no_replica_in_service_does_not_wait(
    world: World,
) -> None:
    members = add_set(world, replicas=1, mode="sync")
    change(world, Instance, members.replicas[0], status="BUILD")
    task_id = add_task(world, WorkflowName.REPLICATION_MODE, members.primary)
    assert run(world, task_id, "apply_mode") is NEXT
    assert enabled(world, members.primary) == [([replica_name(members.replicas[0])], False)]


def test_apply_mode_of_an_instance_in_no_set_fails(world: World) -> None:
    task_id = add_task(world, WorkflowName.REPLICATION_MODE, add_instance(world))
    with pytest.raises(StepFailed, match="the instance is no longer in a replica set"):
        run(world, task_id, "apply_mode")


def test_apply_mode_refused_by_the_primary_fails_with_its_message(world: World) -> None:
    members = add_set(world, replicas=1, mode="sync")
    world.agent_of(members.primary).failing["enable_replication"] = AgentError("bad setting")
    task_id = add_task(world, WorkflowName.REPLICATION_MODE, members.primary)
    with pytest.raises(StepFailed, match="bad setting"):
        run(world, task_id, "apply_mode")
