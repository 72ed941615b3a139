"""Databases and users on a running instance, one short agent call per item."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from cellar import catalog
from cellar.models import utcnow
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.agent_client import NewUser
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows.common import agent_call

logger = logging.getLogger(__name__)


def create_databases(ctx: StepContext) -> Decision:
    agent = ctx.agent
    for database in ctx.task.params.get("databases", []):
        name, charset, collate = (
            database["name"],
            database.get("character_set", ""),
            database.get("collate", ""),
        )
        agent_call(functools.partial(agent.create_database, name, charset, collate))
    return NEXT


def delete_database(ctx: StepContext) -> Decision:
    agent = ctx.agent
    agent_call(lambda: agent.delete_database(ctx.task.params["name"]))
    return NEXT


def create_users(ctx: StepContext) -> Decision:
    agent = ctx.agent
    secret = ctx.secret()
    for user in ctx.task.params.get("users", []):
        new = NewUser(
            name=user["name"],
            password=secret[f"user:{user['name']}"],
            databases=tuple(user.get("databases", ())),
            host=user.get("host", ""),
        )
        agent_call(functools.partial(agent.create_user, new))
    return NEXT


def delete_user(ctx: StepContext) -> Decision:
    agent = ctx.agent
    params = ctx.task.params
    agent_call(lambda: agent.delete_user(params["name"], params.get("host", "")))
    return NEXT


def change_passwords(ctx: StepContext) -> Decision:
    agent = ctx.agent
    secret = ctx.secret()
    for user in ctx.task.params.get("users", []):
        new = NewUser(
            name=user["name"], password=secret[f"user:{user['name']}"], host=user.get("host", "")
        )
        if not agent_call(functools.partial(agent.change_password, new)):
            raise StepFailed(f"user {user['name']!r} does not exist")
    return NEXT


def grant_access(ctx: StepContext) -> Decision:
    agent = ctx.agent
    params = ctx.task.params
    agent_call(lambda: agent.grant_access(params["name"], params["host"], params["databases"]))
    return NEXT


def revoke_access(ctx: StepContext) -> Decision:
    """The API checked the access was there; found gone, an earlier attempt revoked it."""
    agent = ctx.agent
    params = ctx.task.params
    if not agent_call(
        lambda: agent.revoke_access(params["name"], params["host"], params["database"])
    ):
        logger.info("user %s had no access to %s any more", params["name"], params["database"])
    return NEXT


def enable_root(ctx: StepContext) -> Decision:
    agent = ctx.agent
    password = ctx.secret()["root"]
    agent_call(lambda: agent.enable_root(password))
    ctx.instance.root_enabled_at = utcnow()
    return NEXT


def disable_root(ctx: StepContext) -> Decision:
    agent = ctx.agent
    if not agent_call(agent.disable_root):
        logger.info("the superuser of %s had no network login any more", ctx.instance.id)
    ctx.instance.root_enabled_at = None
    return NEXT


def copy_users_to_replicas(ctx: StepContext) -> Decision:
    """Where users do not travel with the data (Redis ACLs), a primary's replicas copy
    them again: following the same primary once more copies its users."""
    instance = ctx.instance
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    replica_set = replica_sets.load_set(ctx.session, instance)
    if version is None or version.users_replicate or replica_set is None:
        return NEXT
    if replica_set.primary_id != instance.id:
        return NEXT
    for member in replica_sets.replicas(ctx.session, replica_set):
        if member.status not in replica_sets.SERVING:
            continue
        name = replica_sets.replica_name(member.id)
        source = replica_sets.source(ctx.services, replica_set, instance, name)
        agent = ctx.services.agent_for(member)
        agent_call(functools.partial(agent.follow, source, 60.0))
    return NEXT


COPY = Step("copy_users_to_replicas", copy_users_to_replicas, 120, "copying users to replicas")


def _one_step(name: WorkflowName, run: Callable[[StepContext], Decision], what: str) -> Workflow:
    """A change of users or databases: one agent call, then the replicas that need a copy."""
    return Workflow(name, (Step(name.value, run, 120, what), COPY))


CREATE_DATABASES = _one_step(WorkflowName.CREATE_DATABASES, create_databases, "creating databases")
DELETE_DATABASE = _one_step(WorkflowName.DELETE_DATABASE, delete_database, "deleting a database")
CREATE_USERS = _one_step(WorkflowName.CREATE_USERS, create_users, "creating users")
DELETE_USER = _one_step(WorkflowName.DELETE_USER, delete_user, "deleting a user")
CHANGE_PASSWORDS = _one_step(WorkflowName.CHANGE_PASSWORDS, change_passwords, "changing passwords")
GRANT_ACCESS = _one_step(WorkflowName.GRANT_ACCESS, grant_access, "granting access to databases")
REVOKE_ACCESS = _one_step(
    WorkflowName.REVOKE_ACCESS, revoke_access, "revoking access to a database"
)
ENABLE_ROOT = _one_step(WorkflowName.ENABLE_ROOT, enable_root, "enabling the superuser")
DISABLE_ROOT = _one_step(WorkflowName.DISABLE_ROOT, disable_root, "disabling the superuser")
