from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import AuditEvent, Secret, Task
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
GOOD = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 1},
    "datastore": {"type": "postgresql", "version": "15"},
    "databases": [{"name": "shop"}, {"name": "stats"}],
    "users": [{"name": "alice", "password": "pa55-word!", "databases": [{"name": "shop"}]}],
}


@pytest.fixture
def client(world: Any) -> FlaskClient:
    services = world[0]
    return client_for(services)


def create(client: FlaskClient, **changes: Any) -> Any:
    body = {**GOOD, **changes}
    return client.post(f"{BASE}/instances", json={"instance": body})


def test_create_records_intent_task_and_audit_without_password(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, _agent, queue = world
    reply = create(client)
    assert reply.status_code == 202
    view = reply.get_json()["instance"]
    assert view["status"] == "BUILD"
    assert view["task"]["workflow"] == "provision"
    assert view["task"]["step"] == ""  # no worker has begun it yet
    assert view["task"]["description"] == "waiting for a worker to begin it"
    assert view["connection"] is None
    assert [item[0] for item in queue.items] == [view["task"]["id"]]
    with services.db.session() as session:
        task = session.scalars(select(Task)).one()
        audit = session.scalars(select(AuditEvent)).one()
        secret = session.get(Secret, task.id)
        stored = json.dumps(task.params) + json.dumps(audit.details)
    assert "pa55-word!" not in stored
    assert secret is not None and b"pa55-word!" not in secret.ciphertext
    assert audit.action == "instance.create"
    assert audit.details["users"] == ["alice"]


def test_request_id_is_echoed_and_stored(client: FlaskClient, world: Any) -> None:
    reply = client.post(
        f"{BASE}/instances", json={"instance": GOOD}, headers={"X-Request-ID": "req-abc.1"}
    )
    assert reply.headers["X-Request-ID"] == "req-abc.1"
    with world[0].db.session() as session:
        assert session.scalars(select(Task.request_id)).one() == "req-abc.1"
    generated = client.get("/")
    assert generated.headers["X-Request-ID"].startswith("req-")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"flavorRef": "9"}, ["flavorRef", "1, 2, 3, 4"]),
        ({"name": None}, ["name", "required"]),
        ({"name": ""}, ["name"]),
        ({"datastore": {"type": "oracle"}}, ["oracle", "postgresql"]),
        ({"datastore": {"type": "postgresql", "version": "9"}}, ["version", "15"]),
        ({"volume": None}, ["volume"]),
        ({"volume": {"size": 0}}, ["volume.size", "1 to 1024"]),
        ({"volume": {"size": "big"}}, ["volume.size"]),
        ({"databases": [{"name": "x'; DROP TABLE y; --"}]}, ["database name", "letters"]),
        ({"databases": [{"name": 'a"b'}]}, ["database name"]),
        ({"databases": [{"name": "postgres"}]}, ["reserved"]),
        ({"databases": [{"name": "a"}, {"name": "a"}]}, ["twice"]),
        ({"users": [{"name": "bob;", "password": "x"}]}, ["user name"]),
        ({"users": [{"name": "bob", "password": ""}]}, ["password"]),
        ({"users": [{"name": "bob", "password": "x", "databases": [{"name": "nope"}]}]}, ["nope"]),
        ({"users": [{"name": "postgres", "password": "x"}]}, ["reserved"]),
        ({"modules": ["abc"]}, ["modules", "not supported"]),
    ],
)
def test_bad_create_bodies_get_400_naming_the_field(
    client: FlaskClient, changes: dict[str, Any], words: list[str]
) -> None:
    reply = create(client, **changes)
    assert reply.status_code == 400, reply.get_json()
    message = reply.get_json()["badRequest"]["message"]
    assert reply.get_json()["badRequest"]["code"] == 400
    for word in words:
        assert word in message


def test_bad_passwords_are_not_echoed(client: FlaskClient) -> None:
    secret = "x" * 129
    reply = create(client, users=[{"name": "bob", "password": secret}])
    assert reply.status_code == 400
    assert secret not in reply.get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('{"inst": {}}', "application/json"),
    ],
)
def test_malformed_json_gets_400(client: FlaskClient, data: str, content_type: str) -> None:
    reply = client.post(f"{BASE}/instances", data=data, content_type=content_type)
    assert reply.status_code == 400
    assert "badRequest" in reply.get_json()


def test_oversized_body_gets_413(client: FlaskClient) -> None:
    reply = client.post(
        f"{BASE}/instances", data="x" * (2 * 1024 * 1024), content_type="application/json"
    )
    assert reply.status_code == 413
    assert "overLimit" in reply.get_json()


def test_unknown_ids_and_paths_get_404_in_trove_shape(client: FlaskClient) -> None:
    for path in (
        f"{BASE}/instances/nope",
        f"{BASE}/flavors/77",
        f"{BASE}/datastores/oracle",
        "/nothing",
    ):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert reply.get_json()["itemNotFound"]["code"] == 404


def test_bad_project_id_gets_400(client: FlaskClient) -> None:
    reply = client.get("/v1.0/bad;project/instances")
    assert reply.status_code == 400


def test_instances_are_scoped_by_project(client: FlaskClient, world: Any) -> None:
    instance_id = create(client).get_json()["instance"]["id"]
    other = client_for(world[0], "other")
    assert client.get(f"{BASE}/instances/{instance_id}").status_code == 200
    assert other.get(f"/v1.0/other/instances/{instance_id}").status_code == 404
    assert other.get("/v1.0/other/instances").get_json()["instances"] == []
    assert other.get(f"{BASE}/instances/{instance_id}").status_code == 403
    assert client.get("/v1.0/other/instances").status_code == 403
    assert len(client.get(f"{BASE}/instances").get_json()["instances"]) == 1


def test_database_actions_on_a_building_instance_get_422(client: FlaskClient) -> None:
    instance_id = create(client).get_json()["instance"]["id"]
    reply = client.post(
        f"{BASE}/instances/{instance_id}/databases", json={"databases": [{"name": "x"}]}
    )
    assert reply.status_code == 422
    assert "BUILD" in reply.get_json()["unprocessableEntity"]["message"]
    assert client.get(f"{BASE}/instances/{instance_id}/users").status_code == 422


def test_catalog(client: FlaskClient) -> None:
    flavors = client.get(f"{BASE}/flavors").get_json()["flavors"]
    assert [(f["str_id"], f["ram"], f["vcpus"]) for f in flavors] == [
        ("1", 256, 0.5),
        ("2", 512, 1.0),
        ("3", 1024, 1.0),
        ("4", 2048, 2.0),
    ]
    datastores = client.get(f"{BASE}/datastores").get_json()["datastores"]
    assert [d["name"] for d in datastores] == ["postgresql", "mariadb", "redis"]
    for datastore, version in (("postgresql", "15"), ("mariadb", "10.11"), ("redis", "7.0")):
        reply = client.get(f"{BASE}/datastores/{datastore}/versions").get_json()
        assert [v["name"] for v in reply["versions"]] == [version]
    assert client.get("/").get_json()["versions"][0]["id"] == "v1.0"


def test_audit_lists_the_projects_changes_without_passwords(
    client: FlaskClient, world: Any
) -> None:
    instance_id = create(client).get_json()["instance"]["id"]
    assert client.delete(f"{BASE}/instances/{instance_id}").status_code == 202
    reply = client.get(f"{BASE}/audit")
    events = reply.get_json()["events"]
    assert [e["action"] for e in events] == ["instance.delete", "instance.create"]
    assert all(e["target_id"] == instance_id for e in events)
    assert "pa55-word!" not in reply.get_data(as_text=True)
    assert client_for(world[0], "other").get("/v1.0/other/audit").get_json()["events"] == []
    assert client.get(f"{BASE}/audit?limit=0").status_code == 400


def test_restart_needs_an_active_instance_and_a_known_action(
    client: FlaskClient, world: Any
) -> None:
    services = world[0]
    instance_id = create(client).get_json()["instance"]["id"]
    path = f"{BASE}/instances/{instance_id}/action"
    assert client.post(path, json={"restart": {}}).status_code == 422
    with services.db.session() as session:
        from cellar.models import Instance

        instance = session.get(Instance, instance_id)
        instance.status = "ACTIVE"
        session.get(Task, session.scalars(select(Task.id)).one()).state = "COMPLETED"
    reply = client.post(path, json={"reboot": {}})
    assert reply.status_code == 400
    assert "restart" in reply.get_json()["badRequest"]["message"]
    assert client.post(path, json={"restart": {}}).status_code == 202
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["status"] == "REBOOT"
    assert view["task"]["workflow"] == "restart"


def test_resize_validates_the_flavor_and_runs_the_resize_workflow(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, queue = world
    instance_id = create(client).get_json()["instance"]["id"]
    queue.drain(services)
    path = f"{BASE}/instances/{instance_id}/action"
    for bad, word in (
        ({"resize": {"flavorRef": "2"}}, "already has flavor 2"),
        ({"resize": {"flavorRef": "99"}}, "flavorRef"),
        ({"resize": {"flavorRef": "3", "volume": {"size": 5}}}, "not both"),
        ({"resize": {}}, "flavorRef"),
    ):
        reply = client.post(path, json=bad)
        assert reply.status_code == 400, bad
        assert word in reply.get_json()["badRequest"]["message"]
    assert client.post(path, json={"resize": {"flavorRef": "3"}}).status_code == 202
    assert (
        client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["status"] == "RESIZE"
    )
    queue.drain(services)
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert (view["status"], view["flavor"]["id"]) == ("ACTIVE", "3")
    assert agent.resized == [1024]
    assert "update_limits 1024 1.0" in world[1].calls
