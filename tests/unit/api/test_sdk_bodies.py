"""The bodies openstacksdk's ``conn.database`` sends, which differ from Trove's own client."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.unit.api.support import client_for
from tests.unit.api.test_user_access import BASE, active


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def test_an_instance_made_with_flavor_instead_of_flavor_ref(client: FlaskClient) -> None:
    for flavor in ("2", {"id": "2"}):
        body = {"name": "sdk", "flavor": flavor, "volume": {"size": 1},
                "datastore": {"type": "postgresql", "version": "15"}}  # fmt: skip
        reply = client.post(f"{BASE}/instances", json={"instance": body})
        assert reply.status_code == 202, reply.get_json()
        assert reply.get_json()["instance"]["flavor"]["id"] == "2"
    body = {"name": "sdk", "flavor": "99", "volume": {"size": 1}}
    wrong = client.post(f"{BASE}/instances", json={"instance": body})
    assert wrong.status_code == 400
    assert "not a known flavor" in wrong.get_json()["badRequest"]["message"]


def test_one_database_and_one_named_user(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    base = f"{BASE}/instances/{instance_id}"
    made = client.post(f"{base}/databases", json={"database": {"name": "sdk_db"}})
    assert made.status_code == 202, made.get_json()
    user = {"name": "sdkuser", "password": "sdk-Pass-1", "databases": [{"name": "sdk_db"}]}
    assert client.post(f"{base}/users/sdkuser", json={"users": user}).status_code == 202
    world[3].drain(world[0])
    assert "sdk_db" in world[2].databases
    assert world[2].users["sdkuser"].databases == ("sdk_db",)
    other = client.post(f"{base}/users/someone", json={"users": user})
    assert other.status_code == 400
    assert "names no other" in other.get_json()["badRequest"]["message"]
