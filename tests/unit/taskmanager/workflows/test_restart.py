"""The steps of ``restart``: start_container, restart_engine, mark_active."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.workflow import NEXT, Nap, StepFailed
from tests.unit.taskmanager.workflows.support import World, add_instance, add_task, load, run


def restarting(world: World, running: bool = True) -> tuple[str, str]:
    instance_id = add_instance(world, status="REBOOT", running=running)
    return instance_id, add_task(world, WorkflowName.RESTART, instance_id)


def test_start_container_starts_a_stopped_container_with_its_volume_and_returns_next(
    world: World,
) -> None:
    instance_id, task_id = restarting(world)
    world.compute.stopped.add(instance_id)
    world.compute.unmounted.add(instance_id)
    assert run(world, task_id, "start_container") is NEXT
    assert world.compute.calls == ["start_container", "remount_volume"]
    assert instance_id not in world.compute.stopped | world.compute.unmounted


def test_start_container_of_a_running_container_returns_next(world: World) -> None:
    instance_id, task_id = restarting(world)
    assert run(world, task_id, "start_container") is NEXT
    assert instance_id not in world.compute.stopped


def test_start_container_fails_when_the_container_is_gone(world: World) -> None:
    _instance_id, task_id = restarting(world, running=False)
    with pytest.raises(StepFailed, match="the instance's container is gone"):
        run(world, task_id, "start_container")


def test_restart_engine_returns_next_when_the_engine_comes_back_healthy(world: World) -> None:
    instance_id, task_id = restarting(world)
    assert run(world, task_id, "restart_engine") is NEXT
    assert load(world, Instance, instance_id).status == "REBOOT"  # mark_active does that


def test_restart_engine_naps_while_the_engine_is_still_starting(world: World) -> None:
    world.agent.restart_state = "BUILDING"
    _instance_id, task_id = restarting(world)
    assert run(world, task_id, "restart_engine") == Nap(0.5)


def test_restart_engine_fails_naming_the_detail_when_the_engine_does_not_come_back(
    world: World,
) -> None:
    world.agent.restart_state = "FAILED"
    world.agent.engine_status = ("FAILED", "could not bind to port 5432")
    _instance_id, task_id = restarting(world)
    with pytest.raises(StepFailed, match="the engine did not come back: could not bind"):
        run(world, task_id, "restart_engine")


def test_restart_engine_with_a_permanent_agent_error_fails_with_its_message(
    world: World,
) -> None:
    world.agent.failing["restart"] = AgentError("restart is not allowed now")
    _instance_id, task_id = restarting(world)
    with pytest.raises(StepFailed, match="restart is not allowed now"):
        run(world, task_id, "restart_engine")


def test_restart_engine_with_a_retryable_agent_error_raises_it_to_be_retried(
    world: World,
) -> None:
    world.agent.failing["restart"] = AgentError("unavailable", retryable=True)
    _instance_id, task_id = restarting(world)
    with pytest.raises(AgentError) as raised:
        run(world, task_id, "restart_engine")
    assert not isinstance(raised.value, StepFailed)


def test_mark_active_marks_the_instance_active_and_healthy_and_returns_next(
    world: World,
) -> None:
    instance_id, task_id = restarting(world)
    assert run(world, task_id, "mark_active") is NEXT
    instance = load(world, Instance, instance_id)
    assert (instance.status, instance.operating_status) == ("ACTIVE", "HEALTHY")
