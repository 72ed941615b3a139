"""The steps of ``resize_flavor``: shrink_settings, update_limits, apply_settings,
mark_resized."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import World, add_instance, add_task, load, run


def resizing(world: World, old: str, new: str) -> tuple[str, str]:
    instance_id = add_instance(world, status="RESIZE", flavor_id=old)
    return instance_id, add_task(world, WorkflowName.RESIZE_FLAVOR, instance_id, {"flavor_id": new})


def test_shrink_settings_lowers_the_engine_memory_first_when_memory_shrinks(
    world: World,
) -> None:
    _instance_id, task_id = resizing(world, old="3", new="1")
    assert run(world, task_id, "shrink_settings") is NEXT
    assert world.agent.resized == [256]


def test_shrink_settings_leaves_the_engine_alone_when_memory_grows(world: World) -> None:
    _instance_id, task_id = resizing(world, old="2", new="4")
    assert run(world, task_id, "shrink_settings") is NEXT
    assert world.agent.resized == []


def test_shrink_settings_with_a_permanent_agent_error_fails_with_its_message(
    world: World,
) -> None:
    world.agent.failing["resize"] = AgentError("shared_buffers cannot be changed")
    _instance_id, task_id = resizing(world, old="3", new="1")
    with pytest.raises(StepFailed, match="shared_buffers cannot be changed"):
        run(world, task_id, "shrink_settings")


def test_update_limits_gives_the_container_the_new_flavor_and_returns_next(world: World) -> None:
    _instance_id, task_id = resizing(world, old="2", new="4")
    assert run(world, task_id, "update_limits") is NEXT
    assert world.compute.calls == ["update_limits 2048 2.0"]


def test_apply_settings_tells_the_engine_the_new_memory_and_returns_next(world: World) -> None:
    _instance_id, task_id = resizing(world, old="2", new="4")
    assert run(world, task_id, "apply_settings") is NEXT
    assert world.agent.resized == [2048]


def test_apply_settings_with_a_retryable_agent_error_raises_it_to_be_retried(
    world: World,
) -> None:
    world.agent.failing["resize"] = AgentError("unavailable", retryable=True)
    _instance_id, task_id = resizing(world, old="2", new="4")
    with pytest.raises(AgentError) as raised:
        run(world, task_id, "apply_settings")
    assert not isinstance(raised.value, StepFailed)


def test_mark_resized_records_the_new_flavor_and_returns_next(world: World) -> None:
    instance_id, task_id = resizing(world, old="2", new="4")
    assert run(world, task_id, "mark_resized") is NEXT
    instance = load(world, Instance, instance_id)
    assert (instance.flavor_id, instance.status) == ("4", "ACTIVE")
