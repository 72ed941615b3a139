"""The steps ``provision_replica`` adds: seed_replica, prepare as a replica, join_replica_set."""

from __future__ import annotations

import pytest

from cellar.errors import AgentError
from cellar.models import Instance, ReplicaSet, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager.agent_client import Source
from taskmanager.drivers.docker import container_name
from taskmanager.replica_sets import replica_name
from taskmanager.workflow import NEXT, Nap, StepFailed
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


def new_replica(world: World, members: SetOf, datastore: str = "postgresql") -> tuple[str, str]:
    """A replica of the set's primary being built, and its provision_replica task."""
    replica_id = add_instance(
        world,
        datastore=datastore,
        status="BUILD",
        replica_set_id=members.id,
        replica_of_id=members.primary,
    )
    world.agent_of(replica_id)
    task_id = add_task(
        world,
        WorkflowName.PROVISION_REPLICA,
        replica_id,
        params={"replica": {"source_id": members.primary}, "configuration": {}},
    )
    return replica_id, task_id


def enabled(world: World, primary_id: str) -> list[tuple[list[str], bool]]:
    """What the primary's agent was told to let in: (replica names, synchronous)."""
    calls = world.agent_of(primary_id).replication_calls
    return [value for call, value in calls if call == "enable"]


def test_seed_replica_of_an_instance_that_is_not_a_replica_copies_nothing(world: World) -> None:
    instance_id = add_instance(world, status="BUILD")
    task_id = add_task(world, WorkflowName.PROVISION_REPLICA, instance_id, params={})
    assert run(world, task_id, "seed_replica") is NEXT
    assert world.agent.backups == [] and world.agent.restores == []


def test_seed_replica_lets_the_replica_in_and_streams_a_fresh_backup_of_the_primary(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    assert run(world, task_id, "seed_replica") is NEXT
    assert enabled(world, members.primary) == [([replica_name(replica_id)], False)]
    assert world.agent_of(members.primary).backups == [(f"seed-{replica_id}", "full", "")]
    assert world.agent_of(replica_id).restores == [("full", 0, "tar", b"page-1page-2")]


def test_seed_replica_of_redis_lets_it_in_and_copies_nothing(world: World) -> None:
    members = add_set(world, replicas=0, datastore="redis")
    replica_id, task_id = new_replica(world, members, datastore="redis")
    assert run(world, task_id, "seed_replica") is NEXT
    assert enabled(world, members.primary) == [([replica_name(replica_id)], False)]
    assert world.agent_of(members.primary).backups == []
    assert world.agent_of(replica_id).restores == []


def test_seed_replica_naps_while_an_earlier_replica_of_the_set_is_not_seeded(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    _first, _first_task = new_replica(world, members)
    _second, second_task = new_replica(world, members)
    assert run(world, second_task, "seed_replica") == Nap(0.5)
    assert world.agent_of(members.primary).backups == []
    assert enabled(world, members.primary) == []


def test_seed_replica_does_not_wait_for_an_earlier_replica_already_seeded(world: World) -> None:
    members = add_set(world, replicas=0)
    _first, first_task = new_replica(world, members)
    second, second_task = new_replica(world, members)
    run(world, first_task, "seed_replica")
    change(world, Task, first_task, step="prepare")
    assert run(world, second_task, "seed_replica") is NEXT
    assert world.agent_of(second).restores[0][:2] == ("full", 0)


def test_seed_replica_fails_when_the_set_no_longer_exists(world: World) -> None:
    members = add_set(world, replicas=0)
    _replica_id, task_id = new_replica(world, members)
    change(world, ReplicaSet, members.id, deleted_at=utcnow())
    with pytest.raises(StepFailed, match="the replica set of this instance no longer exists"):
        run(world, task_id, "seed_replica")


def test_seed_replica_fails_when_the_primary_is_in_error_and_copies_nothing(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    _replica_id, task_id = new_replica(world, members)
    change(world, Instance, members.primary, status="ERROR")
    with pytest.raises(StepFailed, match=f"the primary {members.primary} is ERROR"):
        run(world, task_id, "seed_replica")
    assert world.agent_of(members.primary).backups == []


def test_seed_replica_fails_saying_the_backup_of_the_primary_failed(world: World) -> None:
    members = add_set(world, replicas=0)
    _replica_id, task_id = new_replica(world, members)
    world.agent_of(members.primary).backup_error = AgentError("pg_basebackup: no WAL")
    with pytest.raises(
        StepFailed,
        match=f"copying the primary {members.primary} failed backing up the primary: "
        "pg_basebackup: no WAL",
    ):
        run(world, task_id, "seed_replica")


def test_seed_replica_raises_a_retryable_backup_error_to_be_retried(world: World) -> None:
    members = add_set(world, replicas=0)
    _replica_id, task_id = new_replica(world, members)
    world.agent_of(members.primary).backup_error = AgentError("unavailable", retryable=True)
    with pytest.raises(AgentError, match="unavailable") as raised:
        run(world, task_id, "seed_replica")
    assert not isinstance(raised.value, StepFailed)


def test_seed_replica_fails_saying_the_restore_into_the_replica_failed(world: World) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    world.agent_of(replica_id).failing["restore"] = AgentError("data directory not empty")
    with pytest.raises(StepFailed, match="failed restoring into the replica: data directory"):
        run(world, task_id, "seed_replica")


def test_seed_replica_fails_when_the_primary_refuses_to_let_it_in(world: World) -> None:
    members = add_set(world, replicas=0)
    _replica_id, task_id = new_replica(world, members)
    world.agent_of(members.primary).failing["enable_replication"] = AgentError("slots full")
    with pytest.raises(StepFailed, match="slots full"):
        run(world, task_id, "seed_replica")
    assert world.agent_of(members.primary).backups == []


def test_prepare_of_a_replica_starts_it_following_the_primary_and_leaves_it_in_build(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    assert run(world, task_id, "prepare") is NEXT  # not the last step: join_replica_set is
    agent = world.agent_of(replica_id)
    ((call, source),) = agent.replication_calls
    assert call == "prepare_replica" and isinstance(source, Source)
    assert (source.host, source.port, source.user, source.name) == (
        container_name(members.primary),
        5432,
        "cellar_repl",
        replica_name(replica_id),
    )
    assert source.password
    assert agent.restored_prepares == 1  # seeded from a backup
    assert load(world, Instance, replica_id).status == "BUILD"


def test_prepare_of_a_redis_replica_does_not_say_it_was_restored(world: World) -> None:
    members = add_set(world, replicas=0, datastore="redis")
    replica_id, task_id = new_replica(world, members, datastore="redis")
    assert run(world, task_id, "prepare") is NEXT
    assert world.agent_of(replica_id).restored_prepares == 0


def test_join_replica_set_puts_the_replica_behind_the_ro_endpoint_and_marks_it_active(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    assert run(world, task_id, "join_replica_set") is NEXT
    instance = load(world, Instance, replica_id)
    assert (instance.status, instance.operating_status) == ("ACTIVE", "HEALTHY")
    rw, ro = world.endpoints.sets[members.id]
    assert rw is not None and rw.name == members.primary
    assert [b.name for b in ro] == [replica_id]
    assert enabled(world, members.primary)[-1][0] == [replica_name(replica_id)]
    replica_set = load(world, ReplicaSet, members.id)
    assert replica_set.rw_port and replica_set.ro_port


def test_join_replica_set_run_twice_keeps_the_same_endpoints(world: World) -> None:
    members = add_set(world, replicas=1)
    replica_id, task_id = new_replica(world, members)
    run(world, task_id, "join_replica_set")
    once = (world.endpoints.sets[members.id], load(world, ReplicaSet, members.id).rw_port)
    assert run(world, task_id, "join_replica_set") is NEXT
    assert (world.endpoints.sets[members.id], load(world, ReplicaSet, members.id).rw_port) == once
    assert sorted(b.name for b in once[0][1]) == sorted([*members.replicas, replica_id])


def test_join_replica_set_of_an_instance_that_is_not_a_replica_marks_it_active(
    world: World,
) -> None:
    instance_id = add_instance(world, status="BUILD")
    task_id = add_task(world, WorkflowName.PROVISION_REPLICA, instance_id, params={})
    assert run(world, task_id, "join_replica_set") is NEXT
    assert load(world, Instance, instance_id).status == "ACTIVE"
    assert world.endpoints.sets == {}


def test_join_replica_set_fails_without_marking_active_when_the_set_is_gone(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    change(world, ReplicaSet, members.id, deleted_at=utcnow())
    with pytest.raises(StepFailed, match="the replica set of this instance no longer exists"):
        run(world, task_id, "join_replica_set")
    assert load(world, Instance, replica_id).status == "BUILD"
    assert world.endpoints.sets == {}


def test_join_replica_set_refused_by_the_primary_neither_marks_active_nor_serves_reads(
    world: World,
) -> None:
    members = add_set(world, replicas=0)
    replica_id, task_id = new_replica(world, members)
    world.agent_of(members.primary).failing["enable_replication"] = AgentError("slots full")
    with pytest.raises(StepFailed, match="slots full"):
        run(world, task_id, "join_replica_set")
    assert load(world, Instance, replica_id).status == "BUILD"
    assert world.endpoints.sets == {}


def test_join_replica_set_of_a_sync_set_makes_the_primary_wait_for_a_serving_replica(
    world: World,
) -> None:
    members = add_set(world, replicas=1, mode="sync")
    replica_id, task_id = new_replica(world, members)
    assert run(world, task_id, "join_replica_set") is NEXT
    names, synchronous = enabled(world, members.primary)[-1]
    assert sorted(names) == sorted(replica_name(r) for r in [*members.replicas, replica_id])
    assert synchronous


def test_join_replica_set_makes_a_sync_primary_wait_for_its_first_replica(world: World) -> None:
    members = add_set(world, replicas=0, mode="sync")
    replica_id, task_id = new_replica(world, members)
    assert run(world, task_id, "join_replica_set") is NEXT
    names, synchronous = enabled(world, members.primary)[-1]
    assert names == [replica_name(replica_id)] and synchronous
