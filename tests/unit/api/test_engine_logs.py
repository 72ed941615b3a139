"""Trove's log actions on an instance's engine logs, on fakes: show, publish, discard, and
enable/disable refused for the engine's own (SYS) logs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import AuditEvent
from tests.unit.api.support import client_for
from tests.unit.api.test_user_access import BASE, active, draining

LOG = "postgresql.log"


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def act(client: FlaskClient, instance_id: str, **body: Any) -> Any:
    return client.post(f"{BASE}/instances/{instance_id}/log", json={"name": LOG, **body})


def stored(world: Any, key: str) -> bytes:
    return b"".join(world[0].storage.reader(key))


def test_show_tells_size_and_nothing_published(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    reply = act(client, instance_id)
    assert reply.status_code == 200, reply.get_json()
    log = reply.get_json()["log"]
    assert log["name"] == LOG and log["type"] == "SYS" and log["status"] == "Ready"
    assert (log["published"], log["pending"]) == (0, len(b"LOG:  ready\n"))
    assert log["container"] is None and log["metafile"] is None


def test_publish_stores_what_the_log_gained_each_time(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    agent = world[2]
    first = agent.engine_logs[LOG]
    with draining(world):
        reply = act(client, instance_id, publish=1)
        assert reply.status_code == 200, reply.get_json()
        log = reply.get_json()["log"]
        assert (log["status"], log["published"], log["pending"]) == ("Published", len(first), 0)
        agent.engine_logs[LOG] = first + b"LOG:  checkpoint complete\n"
        assert act(client, instance_id).get_json()["log"]["status"] == "Partial"
        again = act(client, instance_id, publish=1).get_json()["log"]
    assert again["published"] == len(agent.engine_logs[LOG]) and again["pending"] == 0
    prefix = again["prefix"]
    assert prefix == f"proj1/{instance_id}-logs/{LOG}/"
    assert again["container"].startswith("file://") and again["container"].endswith(prefix)
    assert stored(world, f"{prefix}000001") == first
    assert stored(world, f"{prefix}000002") == b"LOG:  checkpoint complete\n"
    meta = json.loads(stored(world, again["metafile"]))
    assert [(p["from"], p["to"]) for p in meta["parts"]] == [
        (0, len(first)),
        (len(first), len(agent.engine_logs[LOG])),
    ]
    with world[0].db.session() as session:
        actions = [a.action for a in session.scalars(select(AuditEvent))]
    assert actions.count("instance.log_publish") == 2


def test_a_rotated_log_is_published_again_from_its_start(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    agent = world[2]
    agent.engine_logs[LOG] = b"x" * 40
    with draining(world):
        act(client, instance_id, publish=1)
        agent.engine_logs[LOG] = b"new\n"
        assert act(client, instance_id).get_json()["log"]["status"] == "Rotated"
        log = act(client, instance_id, publish=1).get_json()["log"]
    assert (log["published"], log["pending"], log["status"]) == (4, 0, "Published")
    assert stored(world, f"{log['prefix']}000002") == b"new\n"


def test_discard_removes_every_published_part(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        prefix = act(client, instance_id, publish=1).get_json()["log"]["prefix"]
        reply = act(client, instance_id, discard=1)
    assert reply.status_code == 200, reply.get_json()
    log = reply.get_json()["log"]
    assert (log["status"], log["published"], log["prefix"]) == ("Ready", 0, None)
    root = world[0].settings.backups_dir
    assert not (root / f"{prefix}000001").exists() and not (root / f"{prefix}metafile").exists()


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_a_system_log_cannot_be_switched(client: FlaskClient, world: Any, action: str) -> None:
    instance_id = active(client, world)
    reply = act(client, instance_id, **{action: 1})
    assert reply.status_code == 400
    assert "system log (type SYS)" in reply.get_json()["badRequest"]["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "needs 'name'"),
        ({"name": LOG, "enable": 1, "disable": 1}, "enabled and disabled at once"),
        ({"name": LOG, "publish": "yes"}, "'publish' must be 1"),
        ({"name": LOG, "rotate": 1}, "unknown field(s) rotate"),
    ],
)
def test_bad_bodies_say_what_is_wrong(
    client: FlaskClient, world: Any, body: dict[str, Any], says: str
) -> None:
    instance_id = active(client, world)
    reply = client.post(f"{BASE}/instances/{instance_id}/log", json=body)
    assert reply.status_code == 400
    assert says in reply.get_json()["badRequest"]["message"]


def test_an_unknown_log_is_not_found(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    reply = client.post(f"{BASE}/instances/{instance_id}/log", json={"name": "nope", "publish": 1})
    assert reply.status_code == 404
    assert "postgresql.log" in reply.get_json()["itemNotFound"]["message"]
