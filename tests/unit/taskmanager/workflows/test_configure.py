"""The step of ``apply_configuration``: apply_values."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import World, add_instance, add_task, load, run


def configuring(world: World, values: dict[str, str], status: str = "ACTIVE") -> tuple[str, str]:
    instance_id = add_instance(world, status=status)
    task_id = add_task(world, WorkflowName.APPLY_CONFIGURATION, instance_id, {"values": values})
    return instance_id, task_id


def test_apply_values_needing_a_restart_marks_the_instance_restart_required(
    world: World,
) -> None:
    instance_id, task_id = configuring(world, {"max_connections": "200"})
    assert run(world, task_id, "apply_values") is NEXT
    assert world.agent.applied == [{"max_connections": "200"}]
    assert load(world, Instance, instance_id).status == "RESTART_REQUIRED"


def test_apply_values_applied_live_leaves_an_active_instance_active(world: World) -> None:
    instance_id, task_id = configuring(world, {"work_mem": "8MB"})
    assert run(world, task_id, "apply_values") is NEXT
    assert load(world, Instance, instance_id).status == "ACTIVE"


def test_apply_values_applied_live_clears_an_earlier_restart_required(world: World) -> None:
    instance_id, task_id = configuring(world, {"work_mem": "8MB"}, status="RESTART_REQUIRED")
    assert run(world, task_id, "apply_values") is NEXT
    assert load(world, Instance, instance_id).status == "ACTIVE"


def test_apply_values_refused_by_the_engine_fails_with_its_message(world: World) -> None:
    world.agent.failing["apply_configuration"] = AgentError("work_mem: invalid value")
    instance_id, task_id = configuring(world, {"work_mem": "lots"})
    with pytest.raises(StepFailed, match="work_mem: invalid value"):
        run(world, task_id, "apply_values")
    assert load(world, Instance, instance_id).status == "ACTIVE"
