"""/instances/{id}/databases and /users: changes go through tasks, lists are read live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from api import audit, body, replicas, specs
from api.instance_checks import busy_check, load_instance
from api.schemas import parse
from api.schemas.databases import CreateDatabases, CreatePathUser, CreateUsers, Listed
from api.state import services
from cellar import catalog, names
from cellar.errors import AgentError, Busy, InvalidInput, NotFound, Unavailable
from cellar.models import Instance
from cellar.status import InstanceStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("databases", __name__)

T = TypeVar("T")
BASE = "/v1.0/<project_id>/instances/<instance_id>"


def instance_version(instance: Instance, databases: bool = False) -> catalog.DatastoreVersion:
    """The instance's datastore version; with ``databases``, one that has named databases."""
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None:
        raise InvalidInput(f"datastore version {instance.datastore_version} is no longer offered")
    if databases and not version.has_databases:
        raise Busy(specs.no_databases(version))
    return version


def live(instance: Instance, fn: Callable[[Any], T]) -> T:
    """Ask the instance's agent now (a read the user asked for); 503 if it cannot answer."""
    busy_check_read(instance)
    try:
        return fn(services().agent_for(instance))
    except AgentError as exc:
        raise Unavailable(f"instance {instance.id} did not answer: {exc.message}") from exc


def busy_check_read(instance: Instance) -> None:
    if instance.status != InstanceStatus.ACTIVE.value or instance.agent_port is None:
        raise Busy(f"instance {instance.id} is {instance.status}; it can be read once ACTIVE")


def start_change(
    project_id: str,
    instance_id: str,
    workflow: WorkflowName,
    params: dict[str, Any],
    action: str,
    secret: dict[str, str] | None = None,
    validate: Callable[[Instance], None] | None = None,
) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        replicas.refuse_on_replica(instance)
        busy_check(session, instance)
        if validate is not None:
            validate(instance)
        task = start_task(
            session,
            svc.secrets,
            project_id=project_id,
            workflow=workflow,
            request_id=g.request_id,
            instance_id=instance.id,
            params=params,
            secret=secret,
        )
        audit.record(
            session, project_id, action, "instance", instance.id, {**params, "task_id": task.id}
        )
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


def items_of(model: type[Listed]) -> list[dict[str, Any]]:
    """The list under ``model``'s plural; also one object under it or under its singular,
    as openstacksdk sends (``{"database": {...}}``, ``{"users": {...}}``)."""
    wrapper = model.plural
    data = parse(model)
    single = data.get(wrapper, data.get(wrapper.removesuffix("s")))
    if isinstance(single, dict):
        return [single]
    items = body.object_list(data, wrapper)
    if not items:
        raise InvalidInput(f'the body must be {{"{wrapper}": [{{"name": ...}}, ...]}}')
    return items


@blueprint.post(f"{BASE}/databases")
def create_databases(project_id: str, instance_id: str) -> ResponseReturnValue:
    items = items_of(CreateDatabases)
    with services().db.session() as session:
        version = instance_version(load_instance(session, project_id, instance_id), databases=True)
    dbs = specs.databases(items, version)
    return start_change(
        project_id,
        instance_id,
        WorkflowName.CREATE_DATABASES,
        {"databases": dbs},
        "database.create",
    )


@blueprint.get(f"{BASE}/databases")
def list_databases(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        instance_version(instance, databases=True)
    found = live(instance, lambda agent: agent.list_databases())
    return jsonify({"databases": [{k: v for k, v in d.items() if v} for d in found], "links": []})


@blueprint.delete(f"{BASE}/databases/<name>")
def delete_database(project_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    with services().db.session() as session:
        version = instance_version(load_instance(session, project_id, instance_id), databases=True)
    names.check_identifier("database", name, version.reserved_databases)
    return start_change(
        project_id, instance_id, WorkflowName.DELETE_DATABASE, {"name": name}, "database.delete"
    )


@blueprint.post(f"{BASE}/users")
def create_users(project_id: str, instance_id: str) -> ResponseReturnValue:
    return _create_users(project_id, instance_id, items_of(CreateUsers))


@blueprint.post(f"{BASE}/users/<user>")
def create_named_user(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    """openstacksdk's form: the new user's name in the path as well as in the body."""
    items = items_of(CreatePathUser)
    if len(items) != 1 or items[0].get("name", user) != user:
        raise InvalidInput(f"POST .../users/{user} creates that one user; its body names no other")
    return _create_users(project_id, instance_id, [{**items[0], "name": user}])


def _create_users(
    project_id: str, instance_id: str, items: list[dict[str, Any]]
) -> ResponseReturnValue:
    with services().db.session() as session:
        version = instance_version(load_instance(session, project_id, instance_id))
    users, passwords = specs.users(items, version)
    return start_change(
        project_id,
        instance_id,
        WorkflowName.CREATE_USERS,
        {"users": users},
        "user.create",
        secret=passwords,
    )


@blueprint.get(f"{BASE}/users")
def list_users(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    found = live(instance, lambda agent: agent.list_users())
    return jsonify({"users": [user_view(u) for u in found], "links": []})


def user_view(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": user["name"],
        "host": user.get("host") or "%",
        "databases": [{"name": d} for d in user.get("databases", [])],
    }


def split_user(raw: str) -> tuple[str, str]:
    name, _, host = raw.partition("@")
    return name, host


@blueprint.get(f"{BASE}/users/<user>")
def show_user(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    name, host = split_user(user)
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    for found in live(instance, lambda agent: agent.list_users()):
        if found["name"] == name and host in ("", found.get("host") or "%"):
            return jsonify({"user": user_view(found)})
    raise NotFound(f"user {name!r} does not exist on instance {instance_id}")


@blueprint.delete(f"{BASE}/users/<user>")
def delete_user(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    name, host = split_user(user)
    with services().db.session() as session:
        version = instance_version(load_instance(session, project_id, instance_id))
    names.check_identifier("user", name, version.reserved_users)
    host = specs.user_host(host, name, version)
    return start_change(
        project_id,
        instance_id,
        WorkflowName.DELETE_USER,
        {"name": name, "host": host},
        "user.delete",
    )
