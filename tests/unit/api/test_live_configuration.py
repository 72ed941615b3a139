"""``GET /instances/{id}/configuration``: the engine's current values, on fakes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.unit.api.support import client_for
from tests.unit.api.test_user_access import BASE, active


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def test_the_running_values_of_the_groups_parameters(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    reply = client.get(f"{BASE}/instances/{instance_id}/configuration")
    assert reply.status_code == 200, reply.get_json()
    values = reply.get_json()["instance"]["configuration"]
    assert values == {"max_connections": "100", "work_mem": "4096"}


def test_an_instance_that_is_not_active_cannot_be_read(client: FlaskClient, world: Any) -> None:
    reply = client.post(
        f"{BASE}/instances",
        json={"instance": {"name": "new", "flavorRef": "1", "volume": {"size": 1},
                           "datastore": {"type": "postgresql"}}},
    )  # fmt: skip
    instance_id = reply.get_json()["instance"]["id"]
    early = client.get(f"{BASE}/instances/{instance_id}/configuration")
    assert early.status_code == 422
    assert "once ACTIVE" in early.get_json()["unprocessableEntity"]["message"]
    missing = client.get(f"{BASE}/instances/no-such/configuration")
    assert missing.status_code == 404
