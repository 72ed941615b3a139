"""Projects are walled off from each other: a member of project B can neither see nor
change what project A holds, through A's paths (403), through B's own paths with A's
ids in the path or in a body (404, as if A's rows did not exist), nor through a key or
a query. A's rows in the metadata and what A's agents hold are compared before and
after each sweep; a reader's writes and requests without a token change nothing either.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import task_wait
from api.app import create_app
from cellar.models import AuditEvent, Base
from tests.unit.api.support import admin_token, logged_in, member_of
from tests.unit.api.test_role_matrix import (
    BODIES,
    DASHBOARD,
    DS,
    MGMT,
    PUBLIC,
    QUERIES,
    READS,
    Holdings,
    ask,
    furnish,
    identity_of,
    kind_of,
    own_agents,
    routes,
)

A, B = "proj-a", "proj-b"
ID_VARIABLES = ("<instance_id>", "<backup_id>", "<config_id>", "<task_id>")
PLACEHOLDERS = ("{instance}", "{backup}", "{configuration}")
REFUSALS = {("auth.denied", "401"), ("auth.denied", "403")}


@dataclasses.dataclass
class Scene:
    """Two furnished projects, A and B, each with a member; every instance its own agent."""

    app: Flask
    world: Any
    agents: dict[str, Any]
    a: Holdings
    b: Holdings
    a_member: FlaskClient
    b_member: FlaskClient

    @property
    def services(self) -> Any:
        return self.world[0]

    def client(self, project: str, roles: tuple[str, ...] = ("member",)) -> FlaskClient:
        return logged_in(self.app.test_client(), member_of(self.services, project, roles))


@pytest.fixture
def scene(world: Any, monkeypatch: pytest.MonkeyPatch) -> Scene:
    monkeypatch.setattr(task_wait, "WAIT_SECONDS", 0.0)
    agents = own_agents(world[0])
    app = create_app(world[0])
    a_member = logged_in(app.test_client(), member_of(world[0], A))
    b_member = logged_in(app.test_client(), member_of(world[0], B))
    a, b = furnish(a_member, world, A), furnish(b_member, world, B)
    return Scene(app, world, agents, a, b, a_member, b_member)


def rows_of(services: Any, project: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``project`` in the metadata (its audit trail aside), table by table."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with services.db.session() as session:
        for table in Base.metadata.sorted_tables:
            if "project_id" not in table.c or table.name == AuditEvent.__tablename__:
                continue
            rows = session.execute(select(table).where(table.c.project_id == project)).all()
            found[table.name] = sorted(tuple(repr(v) for v in row) for row in rows)
    return found


class Unchanged:
    """What project A holds, taken now, to compare with what it holds later."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.rows = rows_of(scene.services, A)
        held = (scene.a.instance, scene.a.replica)
        self.agents = {i: copy.deepcopy(scene.agents[i]) for i in held}
        with scene.services.db.session() as session:
            self.last_event = max(session.scalars(select(AuditEvent.seq)))

    def check(self, only_refusals_in_trail: bool = True) -> None:
        """A holds what it held; with ``only_refusals_in_trail``, A's audit trail has
        gained at most the refusals of requests made on A's paths by others."""
        scene = self.scene
        scene.world[3].drain(scene.services)  # whatever was started has run
        assert rows_of(scene.services, A) == self.rows
        for instance_id, agent in self.agents.items():
            assert scene.agents[instance_id] == agent, instance_id
        with scene.services.db.session() as session:
            added = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.project_id == A, AuditEvent.seq > self.last_event
                )
            ).all()
            kinds = {(e.action, e.outcome) for e in added}
        # a refusal on A's paths is kept in A's trail; nothing else is added there
        assert not only_refusals_in_trail or kinds <= REFUSALS, kinds


def project_routes(app: Flask) -> list[tuple[str, str]]:
    return [(m, r) for m, r in routes(app) if r.startswith("/v1.0/<project_id>/")]


def refers_to_ids(method: str, rule: str) -> bool:
    """Whether the walk's request names ids: in its path, its body or its query."""
    named = str(BODIES.get((method, rule), "")) + QUERIES.get((method, rule), "")
    return any(v in rule for v in ID_VARIABLES) or any(p in named for p in PLACEHOLDERS)


def test_another_projects_paths_are_forbidden(scene: Scene) -> None:
    before = Unchanged(scene)
    wrong = []
    for method, rule in project_routes(scene.app):
        reply = ask(scene.b_member, method, rule, scene.a, A, {})
        if reply.status_code != 403:
            wrong.append(f"{method} {rule} -> {reply.status_code}")
    assert wrong == []
    before.check()


def test_another_projects_ids_are_not_found_in_ones_own_paths(scene: Scene) -> None:
    before = Unchanged(scene)
    a_ids = scene.a.all_ids()
    wrong = []
    for method, rule in project_routes(scene.app):
        reply = ask(scene.b_member, method, rule, scene.a, B, {})
        status, text = reply.status_code, reply.get_data(as_text=True)
        if kind_of(rule, method) == MGMT:
            expected = 403
        elif refers_to_ids(method, rule) and method != "OPTIONS":
            expected = 404
        else:
            expected = 200 if method in READS else status  # a create of B's own, say
            if status < 400 and rule.endswith("/audit") and method == "GET":
                events = reply.get_json()["events"]
                assert {e["project_id"] for e in events} <= {B}
            elif any(i in text for i in a_ids):
                wrong.append(f"{method} {rule} shows an id of project A: {text[:300]}")
        if status != expected or status >= 500:
            wrong.append(f"{method} {rule} -> {status}, not {expected}: {text[:300]}")
    assert wrong == [], "\n".join(wrong)
    before.check()


def test_references_to_another_projects_rows_in_bodies_are_not_found(scene: Scene) -> None:
    a, b = scene.a, scene.b
    base = f"/v1.0/{B}"
    new = {"name": "mine", "flavorRef": "1", "volume": {"size": 1}, "datastore": DS}
    refused: list[tuple[str, str, Any]] = [
        ("POST", "/instances", {"instance": {"name": "copy", "replica_of": a.instance}}),
        ("POST", "/instances", {"instance": {"name": "copy", "replica_of": a.replica}}),
        ("POST", "/instances", {"instance": {"name": "copy", "replica_of": b.instance,
                                             "configuration": a.configuration}}),
        ("POST", "/instances", {"instance": {**new, "restorePoint": {"backupRef": a.backup}}}),
        ("POST", "/instances", {"instance": {"name": "copy", "flavorRef": "1", "restorePoint": {
            "backupRef": a.backup, "restore_time": "2030-01-01T00:00:00Z"}}}),
        ("POST", "/instances", {"instance": {**new, "configuration": a.configuration}}),
        ("PUT", f"/instances/{b.instance}", {"instance": {"configuration": a.configuration}}),
        ("PUT", f"/instances/{b.instance}",
         {"instance": {"name": "renamed", "configuration": a.configuration}}),
        ("PUT", f"/instances/{a.replica}", {"instance": {"replica_of": None}}),
        ("PUT", f"/instances/{a.instance}", {"instance": {"replication": {"mode": "sync"}}}),
        ("POST", f"/instances/{a.replica}/action", {"promote_to_replica_source": {}}),
        ("POST", f"/instances/{a.instance}/action", {"eject_replica_source": {}}),
        ("POST", f"/instances/{a.instance}/action", {"reset_status": {}}),
        ("POST", f"/instances/{a.instance}/action", {"resize": {"flavorRef": "2"}}),
        ("POST", "/backups", {"backup": {"name": "theirs", "instance": a.instance}}),
        ("POST", "/backups", {"backup": {"name": "theirs", "instance": a.replica}}),
        ("POST", "/backups", {"backup": {"name": "inc", "instance": b.instance,
                                         "parent_id": a.backup}}),
        ("POST", "/backup_strategies", {"backup_strategy": {
            "instance_id": a.instance, "schedule": "0 3 * * *"}}),
        ("DELETE", f"/backup_strategies?instance_id={a.instance}", None),
        ("GET", f"/instances?marker={a.instance}", None),
        ("GET", f"/instances/detail?marker={a.instance}", None),
        ("PUT", f"/configurations/{a.configuration}",
         {"configuration": {"values": {"max_connections": 11}}}),
    ]  # fmt: skip
    before = Unchanged(scene)
    b_before = rows_of(scene.services, B)
    wrong = []
    for method, path, body in refused:
        reply = scene.b_member.open(base + path, method=method, json=body)
        if reply.status_code != 404:
            wrong.append(f"{method} {path} {body} -> {reply.status_code}: {reply.get_json()}")
    assert wrong == []
    before.check()
    assert rows_of(scene.services, B) == b_before  # nothing half-done in B either

    lists = {
        f"/backups?instance_id={a.instance}": "backups",
        f"/backup_strategies?instance_id={a.instance}": "backup_strategies",
        f"/audit?target={a.instance}": "events",
    }
    for path, wrapper in lists.items():
        reply = scene.b_member.get(base + path)
        assert reply.status_code == 200
        assert all(i.get("project_id", B) == B for i in reply.get_json()[wrapper]), path


def test_an_idempotency_key_is_the_projects_own(scene: Scene) -> None:
    body = {"configuration": {"name": "same", "values": {}, "datastore": DS}}
    key = {"Idempotency-Key": "shared-key-1"}
    first = scene.a_member.post(f"/v1.0/{A}/configurations", json=body, headers=key)
    assert first.status_code == 200
    again = scene.a_member.post(f"/v1.0/{A}/configurations", json=body, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    before = Unchanged(scene)
    theirs = scene.b_member.post(f"/v1.0/{B}/configurations", json=body, headers=key)
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["configuration"]["id"] != first.get_json()["configuration"]["id"]
    before.check()


@pytest.mark.parametrize("who", ["reader", "no token"])
def test_a_reader_or_no_token_changes_nothing(scene: Scene, who: str) -> None:
    client = scene.client(A, ("reader",)) if who == "reader" else scene.app.test_client()
    before = Unchanged(scene)
    wrong = []
    for method, rule in routes(scene.app):
        if kind_of(rule, method) in (PUBLIC, DASHBOARD) or method in READS:
            continue
        names = {"user_id": "made-up-id", "role_id": "made-up-id", "victim": "made-up-id"}
        status = ask(client, method, rule, scene.a, A, names).status_code
        if who == "no token" and status != 401:
            wrong.append(f"{method} {rule} -> {status} without a token")
        elif who == "reader" and (status == 401 or status >= 500):
            wrong.append(f"{method} {rule} -> {status} with a valid token")
        elif who == "reader" and rule.startswith("/v1.0/") and status != 403:
            wrong.append(f"{method} {rule} -> {status} for a reader")
    assert wrong == [], "\n".join(wrong)
    before.check(only_refusals_in_trail=who == "no token")  # a reader's own failures are A's


def test_the_identity_api_shows_a_member_only_their_own(scene: Scene) -> None:
    client = scene.b_member
    a_token = member_of(scene.services, A)
    a_user = identity_of(scene.app, a_token).user_id
    a_client = logged_in(scene.app.test_client(), a_token)
    made = a_client.post(
        f"/identity/v3/users/{a_user}/application_credentials",
        json={"application_credential": {"name": "ci"}},
    )
    assert made.status_code == 201
    credential = made.get_json()["application_credential"]["id"]
    v3 = "/identity/v3"
    forbidden = [
        ("GET", f"{v3}/projects/{A}"),
        ("PATCH", f"{v3}/projects/{A}"),
        ("DELETE", f"{v3}/projects/{A}"),
        ("GET", f"{v3}/projects/{A}/users/{a_user}/roles"),
        ("GET", f"{v3}/users/{a_user}"),
        ("PATCH", f"{v3}/users/{a_user}"),
        ("DELETE", f"{v3}/users/{a_user}"),
        ("GET", f"{v3}/users/{a_user}/projects"),
        ("GET", f"{v3}/users/{a_user}/application_credentials"),
        ("GET", f"{v3}/users/{a_user}/application_credentials/{credential}"),
        ("DELETE", f"{v3}/users/{a_user}/application_credentials/{credential}"),
        ("POST", f"{v3}/users/{a_user}/application_credentials"),
        ("POST", f"{v3}/users/{a_user}/password"),
        ("GET", f"{v3}/role_assignments?user.id={a_user}"),
    ]
    before = Unchanged(scene)
    for method, path in forbidden:
        body = {"user": {"description": "x"}} if method in ("PATCH", "POST") else None
        reply = client.open(path, method=method, json=body)
        assert reply.status_code == 403, (method, path, reply.get_json())
    before.check()
    still = a_client.get(f"{v3}/users/{a_user}/application_credentials/{credential}")
    assert still.status_code == 200
    projects = client.get(f"{v3}/projects").get_json()["projects"]
    assert [p["id"] for p in projects] == [B]
    users = client.get(f"{v3}/users").get_json()["users"]
    assert len(users) == 1 and users[0]["id"] != a_user
    mine = client.get(f"{v3}/role_assignments").get_json()["role_assignments"]
    assert {r["scope"]["project"]["id"] for r in mine} == {B}
    assert client.get(f"{v3}/auth/projects").get_json()["projects"][0]["id"] == B


def test_quotas_count_and_limit_the_projects_own_rows(scene: Scene) -> None:
    def limits(client: FlaskClient, project: str) -> dict[str, Any]:
        reply = client.get(f"/v1.0/{project}/limits")
        assert reply.status_code == 200
        return dict(reply.get_json()["limits"][0])

    b_before = limits(scene.b_member, B)
    assert limits(scene.a_member, A) == b_before  # furnished alike
    admin = logged_in(scene.app.test_client(), admin_token(scene.services))
    admin_project = identity_of(scene.app, admin_token(scene.services)).project_id
    quota = admin.put(f"/v1.0/{admin_project}/mgmt/quotas/{A}", json={"quotas": {"instances": 9}})
    assert quota.status_code == 200, quota.get_json()
    body = {"instance": {"name": "more", "flavorRef": "1", "volume": {"size": 1}, "datastore": DS}}
    assert scene.a_member.post(f"/v1.0/{A}/instances", json=body).status_code == 202
    a_after = limits(scene.a_member, A)
    assert a_after["max_instances"] == 9
    assert a_after["total_instances_used"] == b_before["total_instances_used"] + 1
    assert limits(scene.b_member, B) == b_before
