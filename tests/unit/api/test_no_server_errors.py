"""Odd input on every route answers 4xx in Trove's shape, never 500."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.unit.api.support import client_for

ODD_BODIES: list[Any] = [
    None,
    "text",
    [],
    [1, 2],
    0,
    {},
    {"instance": None},
    {"instance": []},
    {"instance": {"name": 5, "flavorRef": {}, "volume": "x"}},
    {"instance": {"name": "a", "flavorRef": "1", "volume": {"size": True}}},
    {"instance": {"name": "a", "flavorRef": "1", "volume": {"size": 1}, "datastore": "pg"}},
    {"instance": {"name": "a", "flavorRef": "1", "volume": {"size": 1}, "users": "bob"}},
    {"instance": {"name": "a", "flavorRef": "1", "volume": {"size": 1}, "users": [{"name": None}]}},
    {"instance": {"name": "a" * 300, "flavorRef": "1", "volume": {"size": 1}}},
    {"instance": {"name": "a\x00b", "flavorRef": "1", "volume": {"size": 1}}},
    {"databases": None},
    {"databases": [None]},
    {"databases": [{"name": ["x"]}]},
    {"users": [{"name": "u", "password": 5}]},
    {"users": [{"name": "u", "password": "p", "databases": "x"}]},
    {"users": [{"name": "u", "password": "p", "host": 7}]},
    {"restart": None, "resize": {}},
    {"resize": "big"},
    {"resize": {"flavorRef": None}},
    {"resize": {"volume": {"size": "x"}}},
    {"instance": {"name": "a", "flavorRef": "1", "restorePoint": {"backupRef": 5}}},
    {
        "instance": {
            "name": "a",
            "flavorRef": "1",
            "restorePoint": {"backupRef": "x", "restore_time": 7},
        }
    },
    {"user": None},
    {"user": {"password": ["x"]}},
    {"password": {"nested": 1}},
    {"backup": None},
    {"backup": {"name": 5, "instance": []}},
    {"backup": {"name": "b", "instance": "missing", "parent_id": 3, "incremental": "x"}},
    {"verify": None, "other": 1},
    {"backup_strategy": {"instance_id": 5, "schedule": 3, "keep_count": "a"}},
    {"instance": {"name": "a", "replica_of": 5}},
    {"instance": {"name": "a", "replica_of": ["x"], "replica_count": "many"}},
    {"instance": {"name": "a", "replica_of": {"id": 1}, "replication": "sync"}},
    {"instance": {"replica_of": "x"}},
    {"instance": {"replication": {"mode": 5}}},
    {"promote_to_replica_source": None},
    {"eject_replica_source": [], "restart": {}},
]
ROUTES = [
    ("POST", "/v1.0/proj1/instances"),
    ("POST", "/v1.0/proj1/instances/{id}/databases"),
    ("POST", "/v1.0/proj1/instances/{id}/users"),
    ("POST", "/v1.0/proj1/instances/{id}/action"),
    ("PUT", "/v1.0/proj1/instances/{id}"),
    ("DELETE", "/v1.0/proj1/instances/{id}/users/a%27b"),
    ("DELETE", "/v1.0/proj1/instances/{id}/databases/x;y"),
    ("GET", "/v1.0/proj1/instances?limit=abc"),
    ("GET", "/v1.0/proj1/instances?marker=nope"),
    ("GET", "/v1.0/proj1/instances/{id}/log/x?lines=-5"),
    ("GET", "/v1.0/proj1/audit?limit=x"),
    ("GET", "/v1.0/proj1/tasks/nope"),
    ("PATCH", "/v1.0/proj1/instances"),
    ("PUT", "/v1.0/proj1/instances/{id}/users"),
    ("PUT", "/v1.0/proj1/instances/{id}/users/alice"),
    ("PUT", "/v1.0/proj1/instances/{id}/users/a%27b/databases"),
    ("GET", "/v1.0/proj1/instances/{id}/users/alice/databases"),
    ("DELETE", "/v1.0/proj1/instances/{id}/users/alice/databases/x;y"),
    ("POST", "/v1.0/proj1/instances/{id}/root"),
    ("POST", "/v1.0/proj1/backups"),
    ("GET", "/v1.0/proj1/backups?limit=x"),
    ("GET", "/v1.0/proj1/backups/nope"),
    ("DELETE", "/v1.0/proj1/backups/nope"),
    ("POST", "/v1.0/proj1/backups/nope/action"),
    ("POST", "/v1.0/proj1/backup_strategies"),
    ("DELETE", "/v1.0/proj1/backup_strategies"),
    ("GET", "/v1.0/proj1/instances/nope/replication_events"),
]


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def test_odd_input_never_causes_a_server_error(client: FlaskClient) -> None:
    made = client.post(
        "/v1.0/proj1/instances",
        json={"instance": {"name": "a", "flavorRef": "1", "volume": {"size": 1}}},
    )
    instance_id = made.get_json()["instance"]["id"]
    for (method, route), body in itertools.product(ROUTES, ODD_BODIES):
        path = route.replace("{id}", instance_id)
        reply = client.open(path, method=method, json=body)
        assert 400 <= reply.status_code < 500, (method, path, body, reply.status_code)
        error = reply.get_json()
        assert isinstance(error, dict) and len(error) == 1, (method, path, error)
        inner = next(iter(error.values()))
        assert inner["code"] == reply.status_code and inner["message"]


def test_odd_replication_requests_on_a_running_instance_get_4xx(
    client: FlaskClient, world: Any
) -> None:
    made = client.post(
        "/v1.0/proj1/instances",
        json={"instance": {"name": "a", "flavorRef": "1", "volume": {"size": 1}}},
    )
    instance_id = made.get_json()["instance"]["id"]
    world[3].drain(world[0])
    bodies: list[tuple[str, str, Any]] = [
        ("POST", "/instances", {"instance": {"name": "r", "replica_of": instance_id,
                                             "replica_count": [2]}}),
        ("POST", "/instances", {"instance": {"name": "r", "replica_of": instance_id,
                                             "replication": {"mode": None, "x": 1}}}),
        ("POST", "/instances", {"instance": {"name": "r", "replica_of": instance_id,
                                             "volume": {"size": "x"}}}),
        ("POST", "/instances", {"instance": {"name": "r", "replica_of": instance_id,
                                             "flavorRef": "nope"}}),
        ("POST", f"/instances/{instance_id}/action", {"promote_to_replica_source": {}}),
        ("POST", f"/instances/{instance_id}/action", {"eject_replica_source": {}}),
        ("PUT", f"/instances/{instance_id}", {"instance": {"replica_of": None}}),
        ("PUT", f"/instances/{instance_id}", {"instance": {"replication": {"mode": "sync"}}}),
    ]  # fmt: skip
    for method, path, body in bodies:
        reply = client.open("/v1.0/proj1" + path, method=method, json=body)
        assert 400 <= reply.status_code < 500, (method, path, body, reply.status_code)
        inner = next(iter(reply.get_json().values()))
        assert inner["code"] == reply.status_code and inner["message"]
