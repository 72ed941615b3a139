from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import Instance, Task
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
BODY = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 2},
    "datastore": {"type": "postgresql", "version": "15"},
}


@pytest.fixture
def client(world: Any) -> FlaskClient:
    services = world[0]
    services.settings = dataclasses.replace(services.settings, volume_backend="loop")
    return client_for(services)


def active(client: FlaskClient, world: Any) -> str:
    services, _compute, _agent, queue = world
    instance_id = str(client.post(f"{BASE}/instances", json={"instance": BODY}).get_json()
                      ["instance"]["id"])  # fmt: skip
    queue.drain(services)
    return instance_id


def resize(client: FlaskClient, instance_id: str, volume: object) -> Any:
    path = f"{BASE}/instances/{instance_id}/action"
    return client.post(path, json={"resize": {"volume": volume}})


def message(reply: Any) -> str:
    assert reply.status_code == 400, reply.get_json()
    return str(reply.get_json()["badRequest"]["message"])


def test_growing_the_volume_runs_resize_volume(client: FlaskClient, world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id = active(client, world)
    assert resize(client, instance_id, {"size": 5}).status_code == 202
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["status"] == "RESIZE"
    assert view["task"]["workflow"] == "resize_volume"
    with services.db.session() as session:
        task = session.scalars(select(Task).where(Task.workflow == "resize_volume")).one()
        assert task.params == {"size": 5, "from_size": 2}
    queue.drain(services)
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert (view["status"], view["volume"]["size"]) == ("ACTIVE", 5)
    assert compute.volume_sizes[instance_id] == 5


@pytest.mark.parametrize(
    ("volume", "words"),
    [
        ({"size": 2}, ["shrinking", "not supported", "current 2 GB"]),
        ({"size": 1}, ["shrinking", "current 2 GB"]),
        ({"size": 2000}, ["volume.size", "1 to 1024"]),
        ({"size": "big"}, ["volume.size", "1 to 1024"]),
        (3, ["volume", "size"]),
        ({}, ["volume", "size"]),
    ],
)
def test_bad_volume_resizes_get_400(
    client: FlaskClient, world: Any, volume: object, words: list[str]
) -> None:
    instance_id = active(client, world)
    text = message(resize(client, instance_id, volume))
    for word in words:
        assert word in text
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert (view["status"], view["volume"]["size"]) == ("ACTIVE", 2)


def test_flavor_and_volume_together_get_400(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    path = f"{BASE}/instances/{instance_id}/action"
    reply = client.post(path, json={"resize": {"flavorRef": "3", "volume": {"size": 4}}})
    assert "not both" in message(reply)


def test_docker_volumes_cannot_be_resized(client: FlaskClient, world: Any) -> None:
    services = world[0]
    instance_id = active(client, world)
    services.settings = dataclasses.replace(services.settings, volume_backend="docker")
    assert "not enforced" in message(resize(client, instance_id, {"size": 4}))


def test_the_view_shows_the_used_gigabytes_once_known(client: FlaskClient, world: Any) -> None:
    services = world[0]
    instance_id = active(client, world)
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["volume"] == {"size": 2}
    with services.db.session() as session:
        session.get(Instance, instance_id).volume_used_bytes = 1_610_612_736 + 5_000_000
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["volume"] == {"size": 2, "used": 1.5}
