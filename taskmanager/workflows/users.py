"""Databases and users on a running instance, one short agent call per item."""

from __future__ import annotations

import functools

from taskmanager.agent_client import NewUser
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, Workflow, register
from taskmanager.workflows.common import agent_call


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


for _name, _run, _what in (
    ("create_databases", create_databases, "creating databases"),
    ("delete_database", delete_database, "deleting a database"),
    ("create_users", create_users, "creating users"),
    ("delete_user", delete_user, "deleting a user"),
):
    register(Workflow(_name, (Step(_name, _run, 120, _what),)))
