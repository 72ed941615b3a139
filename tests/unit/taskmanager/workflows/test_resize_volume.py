"""The steps of ``resize_volume``: grow online, or stop, grow offline and start again."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError, ComputeError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.workflow import NEXT, Hop, Nap, StepFailed
from tests.unit.taskmanager.workflows.support import World, add_instance, add_task, load, run

GIB = 1024**3


def growing(world: World, size: int = 3, running: bool = True) -> tuple[str, str]:
    instance_id = add_instance(world, status="RESIZE", volume_size=1, running=running)
    return instance_id, add_task(world, WorkflowName.RESIZE_VOLUME, instance_id, {"size": size})


def test_grow_online_hops_to_mark_resized_when_the_online_grow_works(world: World) -> None:
    instance_id, task_id = growing(world)
    assert run(world, task_id, "grow_online") == Hop("mark_resized")
    assert world.compute.volume_sizes[instance_id] == 3
    assert "stop_container" not in world.compute.calls


def test_grow_online_returns_next_to_grow_offline_when_the_kernel_refuses(world: World) -> None:
    world.compute.online_resize_refused = True
    instance_id, task_id = growing(world)
    assert run(world, task_id, "grow_online") is NEXT
    assert world.compute.volume_sizes[instance_id] == 1
    assert instance_id not in world.compute.stopped


def test_grow_online_fails_with_the_message_of_another_compute_error(world: World) -> None:
    world.compute.grow_error = ComputeError("no space left on the host for 3 GB")
    instance_id, task_id = growing(world)
    with pytest.raises(StepFailed, match="no space left on the host"):
        run(world, task_id, "grow_online")
    assert world.compute.volume_sizes[instance_id] == 1


def test_stop_container_stops_it_and_returns_next(world: World) -> None:
    instance_id, task_id = growing(world)
    assert run(world, task_id, "stop_container") is NEXT
    assert instance_id in world.compute.stopped


def test_stop_container_fails_when_the_container_is_gone(world: World) -> None:
    _instance_id, task_id = growing(world, running=False)
    with pytest.raises(StepFailed, match="the instance's container is gone"):
        run(world, task_id, "stop_container")


def test_grow_offline_grows_the_stopped_volume_and_returns_next(world: World) -> None:
    instance_id, task_id = growing(world)
    world.compute.stopped.add(instance_id)
    assert run(world, task_id, "grow_offline") is NEXT
    assert world.compute.calls == ["grow_volume 3 offline"]
    assert world.compute.volume_sizes[instance_id] == 3


def test_grow_offline_naps_while_the_volume_is_still_in_use(world: World) -> None:
    instance_id, task_id = growing(world)  # its container still holds the mount
    assert run(world, task_id, "grow_offline") == Nap(0.5)
    assert world.compute.volume_sizes[instance_id] == 1


def test_grow_offline_fails_with_the_message_of_another_compute_error(world: World) -> None:
    world.compute.grow_error = ComputeError("e2fsck found errors")
    instance_id, task_id = growing(world)
    world.compute.stopped.add(instance_id)
    with pytest.raises(StepFailed, match="e2fsck found errors"):
        run(world, task_id, "grow_offline")


def test_start_container_starts_it_with_its_volume_mounted_and_returns_next(world: World) -> None:
    instance_id, task_id = growing(world)
    world.compute.stopped.add(instance_id)
    world.compute.unmounted.add(instance_id)
    assert run(world, task_id, "start_container") is NEXT
    assert instance_id not in world.compute.stopped | world.compute.unmounted


def test_start_container_fails_when_the_container_is_gone(world: World) -> None:
    _instance_id, task_id = growing(world, running=False)
    with pytest.raises(StepFailed, match="the instance's container is gone"):
        run(world, task_id, "start_container")


def test_wait_for_engine_naps_while_the_agent_is_not_serving(world: World) -> None:
    world.agent.serving = False
    _instance_id, task_id = growing(world)
    assert run(world, task_id, "wait_for_engine") == Nap(0.2)


def test_wait_for_engine_returns_next_once_the_engine_is_healthy(world: World) -> None:
    _instance_id, task_id = growing(world)
    assert run(world, task_id, "wait_for_engine") is NEXT


def test_wait_for_engine_naps_while_the_engine_is_still_starting(world: World) -> None:
    world.agent.engine_status = ("BUILDING", "recovering")
    _instance_id, task_id = growing(world)
    assert run(world, task_id, "wait_for_engine") == Nap(0.5)


def test_wait_for_engine_fails_naming_the_detail_when_the_engine_does_not_come_back(
    world: World,
) -> None:
    world.agent.engine_status = ("FAILED", "PANIC: could not locate a valid checkpoint")
    _instance_id, task_id = growing(world)
    with pytest.raises(StepFailed, match="the engine did not come back: PANIC"):
        run(world, task_id, "wait_for_engine")


def test_mark_resized_records_the_size_and_the_volume_usage_and_returns_next(
    world: World,
) -> None:
    world.agent.volume_used_bytes, world.agent.volume_total_bytes = GIB // 2, 3 * GIB
    instance_id, task_id = growing(world)
    assert run(world, task_id, "mark_resized") is NEXT
    instance = load(world, Instance, instance_id)
    assert (instance.volume_size, instance.status) == (3, "ACTIVE")
    assert (instance.volume_used_bytes, instance.volume_total_bytes) == (GIB // 2, 3 * GIB)


def test_mark_resized_keeps_the_old_usage_when_the_agent_cannot_read_it(world: World) -> None:
    instance_id, task_id = growing(world)
    assert run(world, task_id, "mark_resized") is NEXT  # the agent reports 0 and 0
    instance = load(world, Instance, instance_id)
    assert instance.volume_size == 3
    assert (instance.volume_used_bytes, instance.volume_total_bytes) == (None, None)


def test_mark_resized_returns_next_when_the_agent_does_not_answer(world: World) -> None:
    world.agent.failing["status_report"] = AgentError("unavailable", retryable=True)
    instance_id, task_id = growing(world)
    assert run(world, task_id, "mark_resized") is NEXT
    assert load(world, Instance, instance_id).status == "ACTIVE"
