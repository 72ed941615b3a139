"""The steps of the database and user workflows, and copy_users_to_replicas after each."""

from __future__ import annotations

from typing import Any

import pytest

from cellar.errors import AgentError
from cellar.models import Instance
from cellar.workflows import WorkflowName
from taskmanager.agent_client import NewUser, Source
from taskmanager.drivers.docker import container_name
from taskmanager.workflow import NEXT, StepFailed
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    add_set,
    add_task,
    change,
    load,
    run,
)


def on_instance(
    world: World,
    workflow: WorkflowName,
    params: dict[str, Any],
    secret: dict[str, str] | None = None,
    instance_id: str | None = None,
) -> str:
    return add_task(world, workflow, instance_id or add_instance(world), params, secret)


def with_user(world: World, name: str = "al", databases: tuple[str, ...] = ()) -> None:
    world.agent.users[name] = NewUser(name, "old-password", databases)


def follows(world: World, instance_id: str) -> list[object]:
    return [v for c, v in world.agent_of(instance_id).replication_calls if c == "follow"]


def test_create_databases_creates_each_database_and_returns_next(world: World) -> None:
    params = {"databases": [{"name": "shop"}, {"name": "logs", "character_set": "utf8"}]}
    task_id = on_instance(world, WorkflowName.CREATE_DATABASES, params)
    assert run(world, task_id, "create_databases") is NEXT
    assert world.agent.databases == ["shop", "logs"]


def test_create_databases_refused_by_the_engine_fails_with_its_message(world: World) -> None:
    world.agent.failing["create_database"] = AgentError('database "shop" already exists')
    task_id = on_instance(world, WorkflowName.CREATE_DATABASES, {"databases": [{"name": "shop"}]})
    with pytest.raises(StepFailed, match='database "shop" already exists'):
        run(world, task_id, "create_databases")


def test_delete_database_deletes_it_and_returns_next(world: World) -> None:
    world.agent.databases = ["shop", "logs"]
    task_id = on_instance(world, WorkflowName.DELETE_DATABASE, {"name": "shop"})
    assert run(world, task_id, "delete_database") is NEXT
    assert world.agent.databases == ["logs"]


def test_delete_database_rerun_after_it_is_gone_returns_next(world: World) -> None:
    world.agent.databases = ["shop"]
    task_id = on_instance(world, WorkflowName.DELETE_DATABASE, {"name": "shop"})
    run(world, task_id, "delete_database")
    assert run(world, task_id, "delete_database") is NEXT
    assert world.agent.databases == []


def test_create_users_creates_each_user_with_its_sealed_password(world: World) -> None:
    params = {"users": [{"name": "al", "databases": ["shop"]}, {"name": "bo", "host": "10.%"}]}
    secret = {"user:al": "pw-al-123", "user:bo": "pw-bo-456"}
    task_id = on_instance(world, WorkflowName.CREATE_USERS, params, secret)
    assert run(world, task_id, "create_users") is NEXT
    assert world.agent.users == {
        "al": NewUser("al", "pw-al-123", ("shop",)),
        "bo": NewUser("bo", "pw-bo-456", (), "10.%"),
    }


def test_create_users_run_twice_leaves_the_users_as_once(world: World) -> None:
    params = {"users": [{"name": "al"}]}
    task_id = on_instance(world, WorkflowName.CREATE_USERS, params, {"user:al": "pw-al-123"})
    run(world, task_id, "create_users")
    assert run(world, task_id, "create_users") is NEXT
    assert world.agent.users == {"al": NewUser("al", "pw-al-123")}


def test_create_users_refused_by_the_engine_fails_with_its_message(world: World) -> None:
    world.agent.failing["create_user"] = AgentError("role name is reserved")
    params = {"users": [{"name": "al"}]}
    task_id = on_instance(world, WorkflowName.CREATE_USERS, params, {"user:al": "pw-123456"})
    with pytest.raises(StepFailed, match="role name is reserved"):
        run(world, task_id, "create_users")


def test_delete_user_deletes_it_and_returns_next(world: World) -> None:
    with_user(world)
    task_id = on_instance(world, WorkflowName.DELETE_USER, {"name": "al"})
    assert run(world, task_id, "delete_user") is NEXT
    assert world.agent.users == {}


def test_delete_user_rerun_after_the_user_is_gone_returns_next(world: World) -> None:
    with_user(world)
    task_id = on_instance(world, WorkflowName.DELETE_USER, {"name": "al"})
    run(world, task_id, "delete_user")
    assert run(world, task_id, "delete_user") is NEXT


def test_change_passwords_gives_each_user_its_new_password(world: World) -> None:
    with_user(world, databases=("shop",))
    params = {"users": [{"name": "al"}]}
    task_id = on_instance(world, WorkflowName.CHANGE_PASSWORDS, params, {"user:al": "new-pw-1"})
    assert run(world, task_id, "change_passwords") is NEXT
    assert world.agent.users["al"] == NewUser("al", "new-pw-1", ("shop",))


def test_change_passwords_of_a_user_that_does_not_exist_fails_naming_it(world: World) -> None:
    params = {"users": [{"name": "bo"}]}
    task_id = on_instance(world, WorkflowName.CHANGE_PASSWORDS, params, {"user:bo": "new-pw-1"})
    with pytest.raises(StepFailed, match="user 'bo' does not exist"):
        run(world, task_id, "change_passwords")


def test_grant_access_grants_the_databases_and_returns_next(world: World) -> None:
    with_user(world, databases=("shop",))
    params = {"name": "al", "host": "", "databases": ["logs"]}
    task_id = on_instance(world, WorkflowName.GRANT_ACCESS, params)
    assert run(world, task_id, "grant_access") is NEXT
    assert world.agent.users["al"].databases == ("logs", "shop")


def test_revoke_access_revokes_the_database_and_returns_next(world: World) -> None:
    with_user(world, databases=("logs", "shop"))
    params = {"name": "al", "host": "", "database": "shop"}
    task_id = on_instance(world, WorkflowName.REVOKE_ACCESS, params)
    assert run(world, task_id, "revoke_access") is NEXT
    assert world.agent.users["al"].databases == ("logs",)


def test_revoke_access_run_again_after_it_revoked_returns_next(world: World) -> None:
    with_user(world, databases=("logs", "shop"))
    params = {"name": "al", "host": "", "database": "shop"}
    task_id = on_instance(world, WorkflowName.REVOKE_ACCESS, params)
    assert run(world, task_id, "revoke_access") is NEXT
    assert run(world, task_id, "revoke_access") is NEXT  # the API checked it was granted
    assert world.agent.users["al"].databases == ("logs",)


def test_enable_root_sets_the_sealed_password_and_records_when(world: World) -> None:
    instance_id = add_instance(world)
    task_id = on_instance(
        world, WorkflowName.ENABLE_ROOT, {}, {"root": "root-pw-1"}, instance_id=instance_id
    )
    assert run(world, task_id, "enable_root") is NEXT
    assert world.agent.root_password == "root-pw-1"
    assert load(world, Instance, instance_id).root_enabled_at is not None


def test_enable_root_refused_by_the_agent_fails_and_records_nothing(world: World) -> None:
    world.agent.failing["enable_root"] = AgentError("superuser is locked")
    instance_id = add_instance(world)
    task_id = on_instance(
        world, WorkflowName.ENABLE_ROOT, {}, {"root": "root-pw-1"}, instance_id=instance_id
    )
    with pytest.raises(StepFailed, match="superuser is locked"):
        run(world, task_id, "enable_root")
    assert load(world, Instance, instance_id).root_enabled_at is None


def test_copy_users_to_replicas_where_users_replicate_with_the_data_does_nothing(
    world: World,
) -> None:
    members = add_set(world, replicas=1, datastore="postgresql")
    task_id = on_instance(world, WorkflowName.CREATE_USERS, {}, instance_id=members.primary)
    assert run(world, task_id, "copy_users_to_replicas") is NEXT
    assert follows(world, members.replicas[0]) == []


def test_copy_users_to_replicas_of_redis_has_each_serving_replica_follow_again(
    world: World,
) -> None:
    members = add_set(world, replicas=2, datastore="redis")
    building = members.replicas[1]
    change(world, Instance, building, status="BUILD")
    task_id = on_instance(world, WorkflowName.CREATE_USERS, {}, instance_id=members.primary)
    assert run(world, task_id, "copy_users_to_replicas") is NEXT
    (source,) = follows(world, members.replicas[0])
    assert isinstance(source, Source) and source.host == container_name(members.primary)
    assert follows(world, building) == []


@pytest.mark.parametrize(
    "workflow",
    [
        WorkflowName.CREATE_DATABASES,
        WorkflowName.DELETE_DATABASE,
        WorkflowName.CREATE_USERS,
        WorkflowName.DELETE_USER,
        WorkflowName.CHANGE_PASSWORDS,
        WorkflowName.GRANT_ACCESS,
        WorkflowName.REVOKE_ACCESS,
        WorkflowName.ENABLE_ROOT,
    ],
)
def test_copy_users_to_replicas_after_any_change_of_users_has_redis_replicas_follow(
    world: World, workflow: WorkflowName
) -> None:
    members = add_set(world, replicas=1, datastore="redis")
    task_id = on_instance(world, workflow, {}, instance_id=members.primary)
    assert run(world, task_id, "copy_users_to_replicas") is NEXT
    assert len(follows(world, members.replicas[0])) == 1


def test_copy_users_to_replicas_of_a_redis_instance_in_no_set_does_nothing(world: World) -> None:
    instance_id = add_instance(world, datastore="redis")
    task_id = on_instance(world, WorkflowName.CREATE_USERS, {}, instance_id=instance_id)
    assert run(world, task_id, "copy_users_to_replicas") is NEXT
    assert world.agent.replication_calls == []


def test_copy_users_to_replicas_on_a_redis_replica_does_nothing(world: World) -> None:
    members = add_set(world, replicas=2, datastore="redis")
    replica = members.replicas[0]
    task_id = on_instance(world, WorkflowName.CREATE_USERS, {}, instance_id=replica)
    assert run(world, task_id, "copy_users_to_replicas") is NEXT
    assert all(follows(world, r) == [] for r in members.replicas)


def test_copy_users_to_replicas_fails_when_a_redis_replica_refuses_to_follow(
    world: World,
) -> None:
    members = add_set(world, replicas=1, datastore="redis")
    world.agent_of(members.replicas[0]).failing["follow"] = AgentError("NOAUTH")
    task_id = on_instance(world, WorkflowName.CREATE_USERS, {}, instance_id=members.primary)
    with pytest.raises(StepFailed, match="NOAUTH"):
        run(world, task_id, "copy_users_to_replicas")
