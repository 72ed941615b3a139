"""Every route of the app, for every method, asked by four callers: no token, a reader
and a member of the project, and an admin (the admin role on the admin project).

``KINDS`` names every rule the app serves with who may use it; a route the table does
not know fails ``test_every_route_is_classified``, so a new route is added here, with
its rule, on purpose. The walk sends each write a body that could succeed, so a member
really changes things: what is refused is refused for who asks, not for a bad body.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import auth, task_wait
from api.app import create_app
from cellar import catalog
from cellar.identity import store
from cellar.identity.models import Project, Role, User
from cellar.identity.tokens import TokenSealer
from tests.unit.api.support import admin_token, logged_in, member_of
from tests.unit.fakes import FakeAgent

PUBLIC = "public"  # anyone, without a token
PROJECT = "project"  # /v1.0/{project}/...: a reader reads, a member changes, in its project
MGMT = "mgmt"  # /v1.0/{project}/mgmt/...: admins only
ANY = "any"  # identity: anyone with a token
SELF = "self"  # identity: the user of the path (filled with the caller), or an admin
ADMIN = "admin"  # identity: admins only
METRICS = "metrics"  # /metrics: admins, or the scrape token (test_prometheus tries it)
OWNERS = "owners"  # /v1.0/{project}/settings: the project reads, its admins change
DASHBOARD = "dashboard"  # web pages: a session cookie, not a token (test_dashboard walks them)

Kind = str | dict[str, str]
IDENTITY = "/identity/v3"
KINDS: dict[str, Kind] = {
    "/": PUBLIC,
    "/v1.0/": PUBLIC,
    "/v1.0/openapi.json": PUBLIC,
    "/healthcheck": PUBLIC,
    "/metrics": METRICS,
    "/identity": PUBLIC,
    "/identity/": PUBLIC,
    f"{IDENTITY}": PUBLIC,
    f"{IDENTITY}/": PUBLIC,
    f"{IDENTITY}/auth/tokens": {"POST": PUBLIC, "GET": SELF, "HEAD": SELF, "DELETE": SELF},
    f"{IDENTITY}/auth/catalog": ANY,
    f"{IDENTITY}/auth/projects": ANY,
    f"{IDENTITY}/domains": ANY,
    f"{IDENTITY}/domains/<domain_id>": ANY,
    f"{IDENTITY}/projects": {"GET": ANY, "POST": ADMIN},
    f"{IDENTITY}/projects/<project_id>": {"GET": ANY, "PATCH": ADMIN, "DELETE": ADMIN},
    f"{IDENTITY}/projects/<project_id>/users/<user_id>/roles": SELF,
    f"{IDENTITY}/projects/<project_id>/users/<user_id>/roles/<role_id>": {
        "GET": SELF,
        "HEAD": SELF,
        "PUT": ADMIN,
        "DELETE": ADMIN,
    },
    f"{IDENTITY}/role_assignments": ANY,
    f"{IDENTITY}/roles": ANY,
    f"{IDENTITY}/roles/<role_id>": ANY,
    f"{IDENTITY}/users": {"GET": ANY, "POST": ADMIN},
    f"{IDENTITY}/users/<user_id>": {"GET": SELF, "PATCH": ADMIN, "DELETE": ADMIN},
    f"{IDENTITY}/users/<user_id>/application_credentials": SELF,
    f"{IDENTITY}/users/<user_id>/application_credentials/<credential_id>": SELF,
    f"{IDENTITY}/users/<user_id>/password": SELF,
    f"{IDENTITY}/users/<user_id>/projects": SELF,
    "/v1.0/<project_id>/audit": PROJECT,
    "/v1.0/<project_id>/backup_strategies": PROJECT,
    "/v1.0/<project_id>/backups": PROJECT,
    "/v1.0/<project_id>/backups/<backup_id>": PROJECT,
    "/v1.0/<project_id>/backups/<backup_id>/action": PROJECT,
    "/v1.0/<project_id>/configurations": PROJECT,
    "/v1.0/<project_id>/configurations/<config_id>": PROJECT,
    "/v1.0/<project_id>/configurations/<config_id>/instances": PROJECT,
    "/v1.0/<project_id>/datastores": PROJECT,
    "/v1.0/<project_id>/datastores/<datastore>": PROJECT,
    "/v1.0/<project_id>/datastores/<datastore>/versions": PROJECT,
    "/v1.0/<project_id>/datastores/<datastore>/versions/<version>": PROJECT,
    "/v1.0/<project_id>/datastores/<datastore>/versions/<version>/parameters": PROJECT,
    "/v1.0/<project_id>/datastores/<datastore>/versions/<version>/parameters/<name>": PROJECT,
    "/v1.0/<project_id>/datastores/versions/<version_id>": PROJECT,
    "/v1.0/<project_id>/datastores/versions/<version_id>/parameters": PROJECT,
    "/v1.0/<project_id>/datastores/versions/<version_id>/parameters/<name>": PROJECT,
    "/v1.0/<project_id>/flavors": PROJECT,
    "/v1.0/<project_id>/flavors/<flavor_id>": PROJECT,
    "/v1.0/<project_id>/instances": PROJECT,
    "/v1.0/<project_id>/instances/detail": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/action": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/backups": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/configuration": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/databases": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/databases/<name>": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/log": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/credentials": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/credentials/<credential_id>": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/credentials/<credential_id>/action": PROJECT,
    "/v1.0/<project_id>/settings": OWNERS,
    "/v1.0/<project_id>/instances/<instance_id>/log/<name>": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/metrics": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/replication_events": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/root": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/ssl": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/tasks": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/users": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/users/<user>": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/users/<user>/databases": PROJECT,
    "/v1.0/<project_id>/instances/<instance_id>/users/<user>/databases/<database>": PROJECT,
    "/v1.0/<project_id>/limits": PROJECT,
    "/v1.0/<project_id>/mgmt/audit/verify": MGMT,
    "/v1.0/<project_id>/mgmt/instances": MGMT,
    "/v1.0/<project_id>/mgmt/instances/<instance_id>": MGMT,
    "/v1.0/<project_id>/mgmt/tasks": MGMT,
    "/v1.0/<project_id>/mgmt/replication_events": MGMT,
    "/v1.0/<project_id>/mgmt/capacity": MGMT,
    "/v1.0/<project_id>/mgmt/quotas/<target>": MGMT,
    "/v1.0/<project_id>/tasks/<task_id>": PROJECT,
    "/dashboard/": DASHBOARD,
    "/dashboard/login": DASHBOARD,
    "/dashboard/project": DASHBOARD,
    "/dashboard/logout": DASHBOARD,
    "/dashboard/instances": DASHBOARD,
    "/dashboard/instances/rows": DASHBOARD,
    "/dashboard/instances/new": DASHBOARD,
    "/dashboard/instances/<instance_id>": DASHBOARD,
    "/dashboard/instances/<instance_id>/status": DASHBOARD,
    "/dashboard/instances/<instance_id>/chart": DASHBOARD,
    "/dashboard/instances/<instance_id>/connect": DASHBOARD,
    "/dashboard/instances/<instance_id>/users": DASHBOARD,
    "/dashboard/instances/<instance_id>/databases": DASHBOARD,
    "/dashboard/instances/<instance_id>/backups": DASHBOARD,
    "/dashboard/instances/<instance_id>/replicas": DASHBOARD,
    "/dashboard/instances/<instance_id>/<action>": DASHBOARD,
    "/dashboard/instances/<instance_id>/debug-access": DASHBOARD,
    "/dashboard/instances/<instance_id>/debug-access/<credential_id>/revoke": DASHBOARD,
    "/dashboard/instances/<instance_id>/debug-access/<credential_id>/<verdict>": DASHBOARD,
    "/dashboard/backups": DASHBOARD,
    "/dashboard/backups/<backup_id>/verify": DASHBOARD,
    "/dashboard/backups/<backup_id>/delete": DASHBOARD,
    "/dashboard/configurations": DASHBOARD,
    "/dashboard/audit": DASHBOARD,
    "/dashboard/admin": DASHBOARD,
    "/dashboard/static/<path:filename>": DASHBOARD,
}
READS = ("GET", "HEAD", "OPTIONS")
ORDER = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")  # deletes last
DS = {"type": "postgresql", "version": "15"}
PASSWORD = "n3w-Pass-word"
VARIABLE = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

# A body each write could succeed with; {instance}, {backup} and {configuration} are
# filled with the ids of the path's project (or, in test_isolation, another's).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1.0/<project_id>/instances"): {"instance": {
        "name": "more", "flavorRef": "1", "volume": {"size": 1}, "datastore": DS,
        "configuration": "{configuration}"}},
    ("PUT", "/v1.0/<project_id>/instances/<instance_id>"): {
        "instance": {"name": "renamed", "configuration": "{configuration}"}},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/action"): {"restart": {}},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/databases"): {
        "databases": [{"name": "extra"}]},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/users"): {
        "users": [{"name": "bob", "password": PASSWORD, "databases": [{"name": "shop"}]}]},
    ("PUT", "/v1.0/<project_id>/instances/<instance_id>/users"): {
        "users": [{"name": "alice", "password": PASSWORD}]},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/users/<user>"): {
        "users": {"password": PASSWORD, "databases": [{"name": "shop"}]}},
    ("PUT", "/v1.0/<project_id>/instances/<instance_id>/users/<user>"): {
        "user": {"password": PASSWORD}},
    ("PUT", "/v1.0/<project_id>/instances/<instance_id>/users/<user>/databases"): {
        "databases": [{"name": "shop"}]},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/root"): {},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/log"): {"name": "postgresql.log"},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/credentials"): {"credential": {
        "reason": "the walk", "databases": ["shop"]}},
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/credentials/<credential_id>/action"): {
        "approve": {}},
    ("PUT", "/v1.0/<project_id>/settings"): {"settings": {"approve_write_credentials": False}},
    ("POST", "/v1.0/<project_id>/backups"): {
        "backup": {"name": "more", "instance": "{instance}"}},
    ("POST", "/v1.0/<project_id>/backups/<backup_id>/action"): {"verify": {}},
    ("POST", "/v1.0/<project_id>/backup_strategies"): {
        "backup_strategy": {"instance_id": "{instance}", "schedule": "0 4 * * *"}},
    ("POST", "/v1.0/<project_id>/configurations"): {"configuration": {
        "name": "more", "values": {"max_connections": 120}, "datastore": DS}},
    ("PUT", "/v1.0/<project_id>/configurations/<config_id>"): {
        "configuration": {"values": {"max_connections": 150}}},
    ("PATCH", "/v1.0/<project_id>/configurations/<config_id>"): {
        "configuration": {"values": {"max_connections": 160}}},
    ("PUT", "/v1.0/<project_id>/mgmt/quotas/<target>"): {"quotas": {"instances": 20}},
    ("POST", f"{IDENTITY}/auth/tokens"): {},
    ("POST", f"{IDENTITY}/projects"): {"project": {"name": "made-in-the-walk"}},
    ("PATCH", f"{IDENTITY}/projects/<project_id>"): {"project": {"description": "walked"}},
    ("POST", f"{IDENTITY}/users"): {"user": {"name": "made-in-the-walk"}},
    ("PATCH", f"{IDENTITY}/users/<user_id>"): {"user": {"description": "walked"}},
    ("POST", f"{IDENTITY}/users/<user_id>/application_credentials"): {
        "application_credential": {"name": "walk"}},
    ("POST", f"{IDENTITY}/users/<user_id>/password"): {},  # the users here have none
}  # fmt: skip
QUERIES = {("DELETE", "/v1.0/<project_id>/backup_strategies"): "instance_id={instance}"}


class AgentWithLogs(FakeAgent):
    """The fake agent, with an engine log to list and tail."""

    def list_logs(self) -> list[dict[str, Any]]:
        return [{"name": "postgresql.log", "size": 12}]

    def tail_log(self, name: str, lines: int) -> list[str]:
        return ["LOG:  ready"][:lines]


def own_agents(services: Any) -> dict[str, AgentWithLogs]:
    """Give every instance an agent of its own: what one is asked shows on it alone."""
    agents: dict[str, AgentWithLogs] = {}
    services.agent_for = lambda instance: agents.setdefault(instance.id, AgentWithLogs())
    return agents


@dataclasses.dataclass(frozen=True)
class Holdings:
    """What :func:`furnish` makes in a project, by id."""

    project: str
    instance: str  # ACTIVE PostgreSQL 15 with database shop and user alice, a set's primary
    replica: str
    backup: str
    configuration: str  # attached to the instance
    strategy: str
    task: str

    def all_ids(self) -> list[str]:
        ids = (self.instance, self.replica, self.backup, self.configuration, self.strategy)
        return [*ids, self.task]


def furnish(client: FlaskClient, world: Any, project: str) -> Holdings:
    """A project with one of everything, made through the API by ``client`` (a member)."""
    services, queue = world[0], world[3]
    base = f"/v1.0/{project}"

    def made(path: str, wrapper: str, **fields: Any) -> str:
        reply = client.post(base + path, json={wrapper: fields})
        assert reply.status_code in (200, 202), reply.get_json()
        queue.drain(services)
        return str(reply.get_json()[wrapper]["id"])

    alice = {"name": "alice", "password": "old-Pass-1", "databases": [{"name": "shop"}]}
    config = made(
        "/configurations",
        "configuration",
        name="tuned",
        datastore=DS,
        values={"max_connections": 100},
    )
    instance = made(
        "/instances",
        "instance",
        name="orders",
        flavorRef="1",
        volume={"size": 1},
        datastore=DS,
        configuration=config,
        databases=[{"name": "shop"}],
        users=[alice],
    )
    backup = made("/backups", "backup", name="nightly", instance=instance)
    replica = made("/instances", "instance", name="copy", replica_of=instance)
    strategy = made(
        "/backup_strategies", "backup_strategy", instance_id=instance, schedule="0 3 * * *"
    )
    tasks = client.get(f"{base}/instances/{instance}/tasks").get_json()["tasks"]
    for instance_id in (instance, replica):
        view = client.get(f"{base}/instances/{instance_id}").get_json()["instance"]
        assert view["status"] == "ACTIVE", view
    assert client.get(f"{base}/backups/{backup}").get_json()["backup"]["status"] == "COMPLETED"
    return Holdings(project, instance, replica, backup, config, strategy, str(tasks[-1]["id"]))


def kind_of(rule: str, method: str) -> str:
    """Who may use ``method`` on ``rule``: HEAD is GET's; Flask answers OPTIONS itself."""
    kind = KINDS[rule]
    if method == "OPTIONS" and (kind == PUBLIC or isinstance(kind, dict)):
        return ANY
    if not isinstance(kind, dict):
        return kind
    return kind["GET"] if method == "HEAD" and "HEAD" not in kind else kind[method]


def routes(app: Flask) -> Iterator[tuple[str, str]]:
    """Every (method, rule) the app serves, reads first and deletes last."""
    found = {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods or ()}
    yield from sorted(found, key=lambda pair: (ORDER.index(pair[0]), pair[1]))


def fill_text(value: Any, held: Holdings) -> Any:
    """``value`` with {instance}, {backup} and {configuration} replaced by ``held``'s."""
    if isinstance(value, str):
        return value.format(
            instance=held.instance, backup=held.backup, configuration=held.configuration
        )
    if isinstance(value, dict):
        return {k: fill_text(v, held) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_text(v, held) for v in value]
    return value


def path_of(rule: str, method: str, held: Holdings, project: str, names: dict[str, str]) -> str:
    """``rule`` with its variables filled: ``held``'s ids in ``project``'s path, and
    ``names`` for the others (the identity API's); a made-up id for one not known."""
    version = catalog.DATASTORES["postgresql"].version("15")
    assert version is not None
    values = {
        "project_id": project,
        "instance_id": held.instance,
        "backup_id": held.backup,
        "config_id": held.configuration,
        "task_id": held.task,
        "user": "alice",
        "database": "shop",
        "flavor_id": "1",
        "datastore": "postgresql",
        "version": "15",
        "version_id": version.id,
        "target": project,
        "filename": "cellar.css",
        "domain_id": "default",
        **names,
    }
    if "/log/" in rule:
        values["name"] = "postgresql.log"
    elif "/parameters/" in rule:
        values["name"] = "max_connections"
    else:
        values["name"] = "shop"
    if kind_of(rule, method) == ADMIN and "victim" in names:
        values["user_id"] = names["victim"]
    path = VARIABLE.sub(lambda m: values.get(m.group(1), "made-up-id"), rule)
    query = QUERIES.get((method, rule))
    return f"{path}?{fill_text(query, held)}" if query else path


def ask(
    client: FlaskClient,
    method: str,
    rule: str,
    held: Holdings,
    project: str,
    names: dict[str, str],
) -> Any:
    """One request of the walk: the filled path, with its body when it is a write."""
    path = path_of(rule, method, held, project, names)
    body = fill_text(BODIES.get((method, rule)), held)
    if method in ("POST", "PUT", "PATCH"):
        return client.open(path, method=method, json=body if body is not None else {})
    return client.open(path, method=method)


def identity_of(app: Flask, token: str) -> store.Identity:
    return auth.current(app).validator.validate(token)


def another_token(services: Any, identity: store.Identity) -> str:
    """A second token of the same user and project, for a walk to revoke."""
    with services.db.session() as session:
        user = session.get(User, identity.user_id)
        project = session.get(Project, identity.project_id)
        assert user is not None and project is not None
        token, _who = store.issue(
            session,
            TokenSealer.from_home(services.settings.home),
            user,
            project,
            ("password",),
            services.settings.token_ttl,
        )
    return token


def allowed(kind: str, method: str, caller: str) -> bool:
    """May ``caller`` (none, reader, member, admin) use a route of ``kind`` with ``method``?"""
    if kind == PUBLIC:
        return True
    if caller == "none":
        return False
    if kind in (ANY, SELF) or caller == "admin":
        return True
    if kind == PROJECT:
        return method in READS or caller == "member"
    if kind == OWNERS:
        return method in READS
    return False  # MGMT, ADMIN and METRICS


def test_every_route_is_classified(world: Any) -> None:
    app = create_app(world[0])
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert sorted(rules - set(KINDS)) == [], "new routes: add them to KINDS with who may use them"
    assert sorted(set(KINDS) - rules) == [], "routes gone: take them out of KINDS"
    for method, rule in routes(app):
        kind_of(rule, method)  # a KeyError names a method the table does not classify
    for method, rule in BODIES:
        assert (method, rule) in set(routes(app)), (method, rule)


def walker(services: Any, app: Flask, project: str, caller: str) -> tuple[FlaskClient, Any]:
    """A client for ``caller``, and what fills the identity API's paths for it: its own
    user, another user (``victim``) for the admins' routes, the reader role, an
    application credential of its own, and a second token of its own to revoke."""
    victim = identity_of(app, member_of(services, project)).user_id
    with services.db.session() as session:
        reader_role = session.scalars(select(Role).where(Role.name == "reader")).one().id
    client = app.test_client()
    names = {"role_id": reader_role, "victim": victim, "credential_id": "made-up-id"}
    if caller == "none":
        return client, names
    token = admin_token(services) if caller == "admin" else member_of(services, project, (caller,))
    logged_in(client, token)
    me = identity_of(app, token)
    names["user_id"] = me.user_id
    client.environ_base["HTTP_X_SUBJECT_TOKEN"] = another_token(services, me)
    made = client.post(
        f"{IDENTITY}/users/{me.user_id}/application_credentials",
        json={"application_credential": {"name": "ci"}},
    )
    assert made.status_code == 201, made.get_json()
    names["credential_id"] = made.get_json()["application_credential"]["id"]
    return client, names


@pytest.mark.parametrize("caller", ["none", "reader", "member", "admin"])
def test_each_caller_gets_what_its_role_allows_on_every_route(
    world: Any, monkeypatch: pytest.MonkeyPatch, caller: str
) -> None:
    services, queue = world[0], world[3]
    monkeypatch.setattr(task_wait, "WAIT_SECONDS", 0.0)
    own_agents(services)
    app = create_app(services)
    project = "walked"
    held = furnish(logged_in(app.test_client(), member_of(services, project)), world, project)
    client, names = walker(services, app, project, caller)
    wrong = []
    for method, rule in routes(app):
        kind = kind_of(rule, method)
        if kind == DASHBOARD:
            continue
        reply = ask(client, method, rule, held, project, names)
        queue.drain(services)  # what a write started ends, so the next finds it ACTIVE
        status = reply.status_code
        if status >= 500 or (status in (401, 403)) == allowed(kind, method, caller):
            wrong.append(f"{method} {rule} ({kind}) -> {status}: {reply.get_data(as_text=True)}")
        elif caller == "none" and kind != PUBLIC:
            assert status == 401, (method, rule)
            if method != "HEAD":
                error = reply.get_json()
                inner = error["error" if rule.startswith("/identity") else "unauthorized"]
                assert inner["code"] == 401 and inner["message"], (method, rule, error)
    assert wrong == [], "\n".join(wrong)
