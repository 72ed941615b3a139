"""The steps of ``provision``: start_instance, then prepare."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.drivers.docker import ImageMissing
from taskmanager.workflow import NEXT, Nap, StepFailed
from tests.unit.taskmanager.workflows.support import World, add_instance, add_task, load, run


def provisioning(world: World, running: bool = False, **fields: str) -> tuple[str, str]:
    instance_id = add_instance(world, status="BUILD", running=running, **fields)
    task_id = add_task(
        world,
        WorkflowName.PROVISION,
        instance_id,
        params={
            "databases": [{"name": "shop"}],
            "users": [{"name": "al", "databases": ["shop"]}],
            "configuration": {"max_connections": "50"},
        },
        secret={"user:al": "pw-123456"},
    )
    return instance_id, task_id


def test_start_instance_creates_network_volume_and_container_and_returns_next(
    world: World,
) -> None:
    instance_id, task_id = provisioning(world)
    assert run(world, task_id, "start_instance") is NEXT
    assert world.compute.calls == ["ensure_network", "ensure_volume", "ensure_container"]
    spec = world.compute.containers[instance_id]
    assert (spec.image, spec.memory_mb, spec.engine_port) == ("cellar/postgresql:15", 512, 5432)
    instance = load(world, Instance, instance_id)
    assert (instance.host, instance.port, instance.agent_port) == ("127.0.0.1", 40000, 40001)
    assert instance.status == "BUILD"


@pytest.mark.parametrize(
    "workflow",
    [WorkflowName.PROVISION, WorkflowName.PROVISION_RESTORE, WorkflowName.PROVISION_REPLICA],
)
def test_start_instance_of_every_provisioning_workflow_starts_the_container_and_returns_next(
    world: World, workflow: WorkflowName
) -> None:
    instance_id = add_instance(world, status="BUILD", running=False)
    task_id = add_task(world, workflow, instance_id, params={})
    assert run(world, task_id, "start_instance") is NEXT
    assert list(world.compute.containers) == [instance_id]


def test_start_instance_whose_container_already_exists_creates_nothing_new_and_returns_next(
    world: World,
) -> None:
    instance_id, task_id = provisioning(world, running=True)
    assert run(world, task_id, "start_instance") is NEXT
    assert list(world.compute.containers) == [instance_id]
    assert world.compute.volumes == {instance_id}
    assert world.compute.networks == {"p1"}


def test_start_instance_run_twice_leaves_the_world_as_once(world: World) -> None:
    instance_id, task_id = provisioning(world)
    assert run(world, task_id, "start_instance") is NEXT
    once = (dict(world.compute.containers), set(world.compute.volumes))
    assert run(world, task_id, "start_instance") is NEXT
    assert (dict(world.compute.containers), set(world.compute.volumes)) == once
    assert load(world, Instance, instance_id).port == 40000


def test_start_instance_fails_when_the_datastore_version_is_no_longer_offered(
    world: World,
) -> None:
    _instance_id, task_id = provisioning(world, datastore_version="9.6")
    with pytest.raises(StepFailed, match=r"datastore version 9\.6 is no longer offered"):
        run(world, task_id, "start_instance")
    assert world.compute.containers == {}


def test_start_instance_with_the_image_missing_fails_saying_to_build_it(world: World) -> None:
    world.compute.container_error = ImageMissing("cannot create container: image not found")
    instance_id, task_id = provisioning(world)
    with pytest.raises(StepFailed, match=r"image not found; build it with `make images`"):
        run(world, task_id, "start_instance")
    assert load(world, Instance, instance_id).port is None


def test_start_instance_naps_while_the_agent_is_not_serving(world: World) -> None:
    world.agent.serving = False
    instance_id, task_id = provisioning(world)
    assert run(world, task_id, "start_instance") == Nap(0.1)
    assert instance_id in world.compute.containers  # the next attempt finds it


def test_prepare_as_the_last_step_marks_the_instance_active_and_returns_next(
    world: World,
) -> None:
    instance_id, task_id = provisioning(world, running=True)
    assert run(world, task_id, "prepare") is NEXT
    instance = load(world, Instance, instance_id)
    assert (instance.status, instance.operating_status) == ("ACTIVE", "HEALTHY")


def test_prepare_when_not_the_last_step_returns_next_and_leaves_the_instance_in_build(
    world: World,
) -> None:
    instance_id, task_id = provisioning(world, running=True)
    assert run(world, task_id, "prepare", last_step=False) is NEXT
    assert load(world, Instance, instance_id).status == "BUILD"


def test_prepare_gives_the_agent_databases_users_passwords_memory_and_configuration(
    world: World,
) -> None:
    _instance_id, task_id = provisioning(world, running=True, flavor_id="3")
    run(world, task_id, "prepare")
    ((databases, users, memory_mb),) = world.agent.prepared
    assert (databases, memory_mb) == (["shop"], 1024)
    assert [(u.name, u.password, u.databases) for u in users] == [("al", "pw-123456", ("shop",))]
    assert world.agent.applied == [{"max_connections": "50"}]
    assert world.agent.restored_prepares == 0
    assert world.agent.replication_calls == []  # not a replica


def test_prepare_with_the_agent_reporting_building_naps(world: World) -> None:
    world.agent.prepare_status = "BUILDING"
    instance_id, task_id = provisioning(world, running=True)
    assert run(world, task_id, "prepare") == Nap(0.2)
    assert load(world, Instance, instance_id).status == "BUILD"


def test_prepare_with_the_agent_failed_raises_step_failed_naming_the_detail(
    world: World,
) -> None:
    world.agent.prepare_status = "FAILED"
    instance_id, task_id = provisioning(world, running=True)
    with pytest.raises(StepFailed, match="the engine could not be prepared: initdb failed"):
        run(world, task_id, "prepare")
    assert load(world, Instance, instance_id).status == "BUILD"


def test_prepare_with_a_permanent_agent_error_raises_step_failed_with_its_message(
    world: World,
) -> None:
    world.agent.prepare_error = AgentError("invalid user name", retryable=False)
    _instance_id, task_id = provisioning(world, running=True)
    with pytest.raises(StepFailed, match="invalid user name"):
        run(world, task_id, "prepare")


def test_prepare_with_a_retryable_agent_error_raises_it_to_be_retried(world: World) -> None:
    world.agent.prepare_error = AgentError("agent unavailable", retryable=True)
    instance_id, task_id = provisioning(world, running=True)
    with pytest.raises(AgentError, match="agent unavailable") as raised:
        run(world, task_id, "prepare")
    assert not isinstance(raised.value, StepFailed)
    assert load(world, Instance, instance_id).status == "BUILD"


def test_prepare_run_twice_leaves_the_same_databases_and_users_as_once(world: World) -> None:
    instance_id, task_id = provisioning(world, running=True)
    run(world, task_id, "prepare")
    once = (list(world.agent.databases), dict(world.agent.users))
    assert run(world, task_id, "prepare") is NEXT
    assert (world.agent.databases, world.agent.users) == once
    assert load(world, Instance, instance_id).status == "ACTIVE"
