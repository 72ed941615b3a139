"""Passwords and database access of an instance's users (Trove's user update routes).

``PUT /users`` changes passwords, ``PUT /users/{name}`` changes one user's password,
``/users/{name}/databases`` lists, grants and revokes access. Changes go through tasks;
the passwords travel in the task's sealed secret, never in its params or the audit.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api import specs
from api.databases import (
    BASE,
    instance_version,
    items_of,
    live,
    split_user,
    start_change,
)
from api.instance_checks import load_instance
from api.schemas import parse
from api.schemas.databases import ChangePasswords, GrantAccess, UpdateUser
from api.state import services
from cellar import catalog, names
from cellar.errors import InvalidInput, NotFound
from cellar.models import Instance
from cellar.workflows import WorkflowName

blueprint = Blueprint("user_access", __name__)


def _named_user(raw: str, version: catalog.DatastoreVersion) -> tuple[str, str]:
    name, host = split_user(raw)
    names.check_identifier("user", name, version.reserved_users)
    return name, specs.user_host(host, name, version)


def _version_of(
    project_id: str, instance_id: str, databases: bool = False
) -> catalog.DatastoreVersion:
    with services().db.session() as session:
        return instance_version(load_instance(session, project_id, instance_id), databases)


@blueprint.put(f"{BASE}/users")
def change_passwords(project_id: str, instance_id: str) -> ResponseReturnValue:
    """Trove's password change: ``{"users": [{"name", "password"[, "host"]}, ...]}``."""
    version = _version_of(project_id, instance_id)
    users: list[dict[str, str]] = []
    passwords: dict[str, str] = {}
    for item in items_of(ChangePasswords):
        unknown = set(item) - {"name", "password", "host"}
        if unknown:
            raise InvalidInput(
                f"a password change takes name, password and host, not {sorted(unknown)}"
            )
        name = names.check_identifier("user", item.get("name"), version.reserved_users)
        if f"user:{name}" in passwords:
            raise InvalidInput(f"user {name!r} is listed twice")
        passwords[f"user:{name}"] = names.check_password(item.get("password"), f"user {name!r}")
        users.append({"name": name, "host": specs.user_host(item.get("host"), name, version)})
    return start_change(
        project_id, instance_id, WorkflowName.CHANGE_PASSWORDS, {"users": users}, "user.password",
        secret=passwords,
    )  # fmt: skip


@blueprint.put(f"{BASE}/users/<user>")
def update_user(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    """Trove's user update; Cellar changes the password (a new name or host is refused)."""
    version = _version_of(project_id, instance_id)
    name, host = _named_user(user, version)
    data = parse(UpdateUser)
    renamed = {k for k in ("name", "host") if data.get(k) not in (None, "", name, host)}
    if renamed or set(data) - {"name", "host", "password"}:
        raise InvalidInput('a user update changes the password only: {"user": {"password": ...}}')
    password = names.check_password(data.get("password"), f"user {name!r}")
    return start_change(
        project_id,
        instance_id,
        WorkflowName.CHANGE_PASSWORDS,
        {"users": [{"name": name, "host": host}]},
        "user.password",
        secret={f"user:{name}": password},
    )


@blueprint.get(f"{BASE}/users/<user>/databases")
def list_access(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        version = instance_version(instance, databases=True)
    name, host = _named_user(user, version)
    granted = _granted(instance, name, host)
    return jsonify({"databases": [{"name": d} for d in granted]})


def _granted(instance: Instance, name: str, host: str) -> list[str]:
    """The databases the user may use now (asked of the agent); NotFound without the user."""
    for found in live(instance, lambda agent: agent.list_users()):
        if found["name"] == name and host in ("", found.get("host") or "%"):
            return list(found.get("databases", []))
    raise NotFound(f"user {name!r} does not exist on instance {instance.id}")


@blueprint.put(f"{BASE}/users/<user>/databases")
def grant_access(project_id: str, instance_id: str, user: str) -> ResponseReturnValue:
    version = _version_of(project_id, instance_id, databases=True)
    name, host = _named_user(user, version)
    databases = [
        names.check_identifier("database", item.get("name"), version.reserved_databases)
        for item in items_of(GrantAccess)
    ]
    params = {"name": name, "host": host, "databases": sorted(set(databases))}
    return start_change(project_id, instance_id, WorkflowName.GRANT_ACCESS, params, "user.grant")


@blueprint.delete(f"{BASE}/users/<user>/databases/<database>")
def revoke_access(
    project_id: str, instance_id: str, user: str, database: str
) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        version = instance_version(instance, databases=True)
    name, host = _named_user(user, version)
    names.check_identifier("database", database, version.reserved_databases)
    if database not in _granted(instance, name, host):
        raise NotFound(f"user {name!r} has no access to database {database!r}")
    params = {"name": name, "host": host, "database": database}
    return start_change(project_id, instance_id, WorkflowName.REVOKE_ACCESS, params, "user.revoke")
