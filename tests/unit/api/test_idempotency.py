"""Idempotency-Key: a retried create gives the same resource back, never a second one."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from api import idempotency
from api.app import create_app
from cellar.models import Backup, Configuration, IdempotencyKey, Instance, ReplicaSet, Task
from tests.unit.api.support import logged_in, member_of

BASE = "/v1.0/proj1"
BODY = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 1},
    "datastore": {"type": "postgresql", "version": "15"},
}


@pytest.fixture
def app(world: Any) -> Flask:
    return create_app(world[0])


@pytest.fixture
def token(world: Any) -> str:
    return member_of(world[0])


@pytest.fixture
def client(app: Flask, token: str) -> FlaskClient:
    return logged_in(app.test_client(), token)


def post(client: FlaskClient, path: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"{BASE}{path}", json=body, headers=headers)


def count(world: Any, model: Any) -> int:
    with world[0].db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def active_instance(client: FlaskClient, world: Any) -> str:
    reply = post(client, "/instances", {"instance": BODY}, None)
    world[3].drain(world[0])
    return str(reply.get_json()["instance"]["id"])


def test_the_same_create_sent_twice_with_one_key_makes_one_instance(
    client: FlaskClient, world: Any
) -> None:
    first = post(client, "/instances", {"instance": BODY}, "retry-1")
    again = post(client, "/instances", {"instance": BODY}, "retry-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json()["instance"]["id"] == first.get_json()["instance"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(world, Instance) == 1 and count(world, Task) == 1
    assert len(world[3].items) == 1  # one task queued


def test_a_replay_shows_the_resource_as_it_is_now(client: FlaskClient, world: Any) -> None:
    first = post(client, "/instances", {"instance": BODY}, "later")
    world[3].drain(world[0])
    again = post(client, "/instances", {"instance": BODY}, "later")
    assert first.get_json()["instance"]["status"] == "BUILD"
    assert again.get_json()["instance"]["status"] == "ACTIVE"


def test_without_a_key_each_create_makes_its_own_instance(client: FlaskClient, world: Any) -> None:
    post(client, "/instances", {"instance": BODY}, None)
    post(client, "/instances", {"instance": BODY}, None)
    assert count(world, Instance) == 2


def test_a_key_sent_again_with_another_request_is_refused(client: FlaskClient, world: Any) -> None:
    post(client, "/instances", {"instance": BODY}, "one-key")
    other = post(client, "/instances", {"instance": {**BODY, "name": "other"}}, "one-key")
    assert other.status_code == 422
    assert (
        "was first sent with another request" in other.get_json()["unprocessableEntity"]["message"]
    )
    assert count(world, Instance) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_a_malformed_key_is_a_clear_400(client: FlaskClient, world: Any, key: str) -> None:
    reply = post(client, "/instances", {"instance": BODY}, key)
    assert reply.status_code == 400
    assert "Idempotency-Key must be" in reply.get_json()["badRequest"]["message"]
    assert count(world, Instance) == 0


def test_a_refused_create_claims_nothing_and_its_fix_may_reuse_the_key(
    client: FlaskClient, world: Any
) -> None:
    bad = post(client, "/instances", {"instance": {**BODY, "flavorRef": "99"}}, "fix-and-retry")
    assert bad.status_code == 400 and count(world, IdempotencyKey) == 0
    fixed = post(client, "/instances", {"instance": BODY}, "fix-and-retry")
    assert fixed.status_code == 202 and count(world, Instance) == 1


def test_backups_configurations_and_strategies_honour_the_key(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active_instance(client, world)
    backup = {"backup": {"name": "nightly", "instance": instance_id}}
    first = post(client, "/backups", backup, "b-1")
    world[3].drain(world[0])
    again = post(client, "/backups", backup, "b-1")
    assert again.get_json()["backup"]["id"] == first.get_json()["backup"]["id"]
    assert count(world, Backup) == 1

    group = {"configuration": {"name": "g", "values": {"work_mem": 8192},
                               "datastore": {"type": "postgresql", "version": "15"}}}  # fmt: skip
    made = post(client, "/configurations", group, "c-1")
    remade = post(client, "/configurations", group, "c-1")
    assert made.status_code == remade.status_code == 200
    assert remade.get_json()["configuration"]["id"] == made.get_json()["configuration"]["id"]
    assert count(world, Configuration) == 1

    strategy = {"backup_strategy": {"instance_id": instance_id, "schedule": "0 3 * * *"}}
    one = post(client, "/backup_strategies", strategy, "s-1")
    two = post(client, "/backup_strategies", strategy, "s-1")
    assert one.get_json()["backup_strategy"]["id"] == two.get_json()["backup_strategy"]["id"]


def test_a_replica_request_retried_with_its_key_makes_one_replica(
    client: FlaskClient, world: Any
) -> None:
    primary = active_instance(client, world)
    body = {"instance": {"name": "copy", "replica_of": primary}}
    first = post(client, "/instances", body, "r-1")
    again = post(client, "/instances", body, "r-1")
    assert again.get_json()["instance"]["id"] == first.get_json()["instance"]["id"]
    assert count(world, Instance) == 2 and count(world, ReplicaSet) == 1


def test_concurrent_creates_with_one_key_make_one_instance(
    app: Flask, world: Any, token: str
) -> None:
    replies: list[Any] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        replies.append(
            post(logged_in(app.test_client(), token), "/instances", {"instance": BODY}, "raced")
        )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [r.status_code for r in replies] == [202] * 4
    assert len({r.get_json()["instance"]["id"] for r in replies}) == 1
    assert count(world, Instance) == 1


def test_concurrent_first_replicas_of_one_primary_make_one_set(
    app: Flask, world: Any, token: str
) -> None:
    primary = active_instance(logged_in(app.test_client(), token), world)
    body = {"instance": {"name": "copy", "replica_of": primary}}
    replies: list[Any] = []
    start = threading.Barrier(3)

    def send() -> None:
        start.wait()
        replies.append(post(logged_in(app.test_client(), token), "/instances", body, None))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [r.status_code for r in replies] == [202] * 3
    with world[0].db.session() as session:
        sets = session.scalars(select(ReplicaSet)).all()
        members = session.scalars(select(Instance).where(Instance.replica_of_id == primary)).all()
        head = session.get(Instance, primary)
    assert len(sets) == 1 and head.replica_set_id == sets[0].id
    assert {m.replica_set_id for m in members} == {sets[0].id} and len(members) == 3


def test_a_second_claim_of_one_key_is_a_replay(app: Flask, world: Any) -> None:
    with app.test_request_context(f"{BASE}/instances", method="POST", json={"x": 1}):
        from flask import g

        g.request_id = "req-1"
        g.idempotency = idempotency.Pending("proj1", "k", "f" * 64, "instance", 202)
        with world[0].db.session() as session:
            idempotency.claim(session, "instance-1")
        with pytest.raises(idempotency.Replay), world[0].db.session() as session:
            idempotency.claim(session, "instance-2")
