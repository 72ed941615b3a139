"""Password changes, database access and root enable through the API, on fakes."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import AuditEvent, Task
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
OLD, NEW = "old-Pass-1", "n3w-Pass-word"


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def active(client: FlaskClient, world: Any, datastore: str = "postgresql") -> str:
    body: dict[str, Any] = {
        "name": "acc",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": datastore},
        "users": [{"name": "alice", "password": OLD}],
    }
    if datastore != "redis":
        body["databases"] = [{"name": "shop"}, {"name": "books"}]
        body["users"][0]["databases"] = [{"name": "shop"}]
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    assert reply.status_code == 202, reply.get_json()
    world[3].drain(world[0])
    instance_id = str(reply.get_json()["instance"]["id"])
    assert client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["status"] == (
        "ACTIVE"
    )
    return instance_id


def finished_tasks(world: Any, workflow: str) -> list[Task]:
    with world[0].db.session() as session:
        rows = session.scalars(select(Task).where(Task.workflow == workflow)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_password_change_reaches_the_agent_and_is_never_stored(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active(client, world)
    reply = client.put(
        f"{BASE}/instances/{instance_id}/users",
        json={"users": [{"name": "alice", "password": NEW}]},
    )
    assert reply.status_code == 202
    world[3].drain(world[0])
    assert world[2].users["alice"].password == NEW
    [task] = finished_tasks(world, "change_passwords")
    assert task.state == "COMPLETED"
    with world[0].db.session() as session:
        details = [json.dumps(a.details) for a in session.scalars(select(AuditEvent))]
    assert NEW not in json.dumps(task.params) + "".join(details)

    one = client.put(
        f"{BASE}/instances/{instance_id}/users/alice", json={"user": {"password": "third-Pw-3"}}
    )
    assert one.status_code == 202
    world[3].drain(world[0])
    assert world[2].users["alice"].password == "third-Pw-3"


def test_password_change_of_an_unknown_user_fails_its_task(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    reply = client.put(
        f"{BASE}/instances/{instance_id}/users",
        json={"users": [{"name": "nobody", "password": NEW}]},
    )
    assert reply.status_code == 202
    world[3].drain(world[0])
    [task] = finished_tasks(world, "change_passwords")
    assert (task.state, task.error) == ("FAILED", "user 'nobody' does not exist")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/users", {"users": [{"name": "alice"}]}, "password is required"),
        ("/users", {"users": [{"name": "a'b", "password": NEW}]}, "not allowed"),
        ("/users", {"users": []}, '"users"'),
        ("/users/alice", {"user": {"name": "bob", "password": NEW}}, "password only"),
        ("/users/alice", {"user": {}}, "password is required"),
        ("/users/alice/databases", {"databases": [{"name": "x;y"}]}, "not allowed"),
        ("/users/alice/databases", {"databases": [{"name": "postgres"}]}, "reserved"),
    ],
)
def test_bad_user_updates_are_refused_with_a_reason(
    client: FlaskClient, world: Any, path: str, body: Any, words: str
) -> None:
    instance_id = active(client, world)
    reply = client.put(f"{BASE}/instances/{instance_id}{path}", json=body)
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]


def test_grant_list_and_revoke_access(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    access = f"{BASE}/instances/{instance_id}/users/alice/databases"
    assert client.get(access).get_json() == {"databases": [{"name": "shop"}]}
    assert client.put(access, json={"databases": [{"name": "books"}]}).status_code == 202
    world[3].drain(world[0])
    assert client.get(access).get_json() == {"databases": [{"name": "books"}, {"name": "shop"}]}
    assert client.delete(f"{access}/shop").status_code == 202
    world[3].drain(world[0])
    assert client.get(access).get_json() == {"databases": [{"name": "books"}]}
    again = client.delete(f"{access}/shop")  # refused at once: there is nothing to revoke
    assert again.status_code == 404
    assert (
        "user 'alice' has no access to database 'shop'"
        in again.get_json()["itemNotFound"]["message"]
    )
    assert len(finished_tasks(world, "revoke_access")) == 1
    missing = client.get(f"{BASE}/instances/{instance_id}/users/nobody/databases")
    assert missing.status_code == 404


def test_access_routes_say_redis_has_no_databases(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world, "redis")
    reply = client.get(f"{BASE}/instances/{instance_id}/users/alice/databases")
    assert reply.status_code == 422
    assert "no named databases" in reply.get_json()["unprocessableEntity"]["message"]


@contextlib.contextmanager
def draining(world: Any) -> Iterator[None]:
    """A worker that runs queued steps while the block waits for them."""
    done = threading.Event()

    def worker() -> None:
        while not done.is_set():
            world[3].drain(world[0])
            done.wait(0.05)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_root_enable_waits_for_its_task_and_returns_the_password_once(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active(client, world)
    assert client.get(f"{BASE}/instances/{instance_id}/root").get_json() == {"rootEnabled": False}
    with draining(world):
        reply = client.post(f"{BASE}/instances/{instance_id}/root")
    assert reply.status_code == 200, reply.get_json()
    user = reply.get_json()["user"]
    assert user["name"] == "postgres" and len(user["password"]) >= 20
    assert world[2].root_password == user["password"]
    assert client.get(f"{BASE}/instances/{instance_id}/root").get_json() == {"rootEnabled": True}
    with world[0].db.session() as session:
        details = [json.dumps(a.details) for a in session.scalars(select(AuditEvent))]
    assert user["password"] not in "".join(details)


def test_root_disable_takes_the_network_login_away(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    root = f"{BASE}/instances/{instance_id}/root"
    never = client.delete(root)
    assert never.status_code == 404
    assert "not enabled" in never.get_json()["itemNotFound"]["message"]
    with draining(world):
        assert client.post(root).status_code == 200
        reply = client.delete(root)
    assert reply.status_code == 204, reply.get_data(as_text=True)
    assert world[2].root_password == ""
    assert client.get(root).get_json() == {"rootEnabled": False}
    with world[0].db.session() as session:
        actions = [a.action for a in session.scalars(select(AuditEvent))]
    assert actions[-1] == "instance.root_disable"


def test_root_enable_refuses_a_bad_password(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    reply = client.post(f"{BASE}/instances/{instance_id}/root", json={"password": "a\nb"})
    assert reply.status_code == 400
    assert "control characters" in reply.get_json()["badRequest"]["message"]
