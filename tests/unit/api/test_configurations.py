from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from cellar import catalog
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
DS = {"type": "postgresql", "version": "15"}


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def new_config(client: FlaskClient, values: dict[str, Any]) -> Any:
    return client.post(
        f"{BASE}/configurations",
        json={"configuration": {"name": "tuned", "values": values, "datastore": DS}},
    )


def test_parameter_rules_are_listed_per_version(client: FlaskClient) -> None:
    reply = client.get(f"{BASE}/datastores/postgresql/versions/15/parameters")
    rules = {r["name"]: r for r in reply.get_json()["configuration-parameters"]}
    assert rules["max_connections"]["restart_required"] is True
    assert (rules["max_connections"]["min"], rules["max_connections"]["max"]) == (10, 5000)
    assert rules["work_mem"]["dynamic"] is True
    one = client.get(f"{BASE}/datastores/postgresql/versions/15/parameters/work_mem")
    assert one.get_json()["name"] == "work_mem"
    missing = client.get(f"{BASE}/datastores/postgresql/versions/15/parameters/shared_buffers")
    assert missing.status_code == 404


def test_parameter_rules_are_found_by_the_version_id(client: FlaskClient) -> None:
    version = catalog.DATASTORES["mariadb"].version("10.11")
    assert version is not None
    base = f"{BASE}/datastores/versions/{version.id}/parameters"
    by_name = client.get(f"{BASE}/datastores/mariadb/versions/10.11/parameters").get_json()
    assert client.get(base).get_json() == by_name
    one = client.get(f"{base}/max_connections").get_json()
    assert (one["name"], one["datastore_version_id"]) == ("max_connections", version.id)
    assert client.get(f"{base}/work_mem").status_code == 404
    unknown = client.get(f"{BASE}/datastores/versions/no-such-version/parameters")
    assert unknown.status_code == 404
    assert "no-such-version" in unknown.get_json()["itemNotFound"]["message"]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"max_connections": 5}, "max_connections must be an integer from 10 to 5000"),
        ({"max_connections": "many"}, "max_connections must be an integer"),
        ({"shared_buffers": "1GB"}, "not a parameter"),
        ({"autovacuum": "maybe"}, "true or false"),
        ({"log_statement": "everything"}, "none, ddl, mod, all"),
        ({"timezone": "a'b"}, "timezone"),
    ],
)
def test_bad_values_name_the_parameter_and_range(
    client: FlaskClient, values: dict[str, Any], words: str
) -> None:
    reply = new_config(client, values)
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]


def test_attach_applies_and_static_values_need_a_restart(client: FlaskClient, world: Any) -> None:
    services, _compute, agent, queue = world
    config = new_config(client, {"max_connections": 200, "work_mem": 8192}).get_json()
    config_id = config["configuration"]["id"]
    assert config["configuration"]["values"] == {"max_connections": 200, "work_mem": 8192}
    made = client.post(
        f"{BASE}/instances",
        json={"instance": {"name": "db", "flavorRef": "2", "volume": {"size": 1},
                           "datastore": DS, "configuration": config_id}},
    )  # fmt: skip
    instance_id = made.get_json()["instance"]["id"]
    queue.drain(services)
    assert agent.applied[-1] == {"max_connections": "200", "work_mem": "8192"}
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert (view["status"], view["configuration"]["id"]) == ("ACTIVE", config_id)
    listed = client.get(f"{BASE}/configurations/{config_id}/instances").get_json()["instances"]
    assert [i["id"] for i in listed] == [instance_id]
    assert client.delete(f"{BASE}/configurations/{config_id}").status_code == 400

    patch = {"configuration": {"values": {"max_connections": 300}}}
    assert client.patch(f"{BASE}/configurations/{config_id}", json=patch).status_code == 202
    queue.drain(services)
    assert agent.applied[-1] == {"max_connections": "300", "work_mem": "8192"}
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["status"] == "RESTART_REQUIRED"

    detach = {"instance": {"configuration": None}}
    assert client.put(f"{BASE}/instances/{instance_id}", json=detach).status_code == 202
    queue.drain(services)
    assert agent.applied[-1] == {}
    view = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]
    assert view["status"] == "ACTIVE" and "configuration" not in view
    assert client.delete(f"{BASE}/configurations/{config_id}").status_code == 202
    assert client.get(f"{BASE}/configurations/{config_id}").status_code == 404


def test_a_configuration_of_another_datastore_version_is_refused(client: FlaskClient) -> None:
    reply = client.post(
        f"{BASE}/instances",
        json={"instance": {"name": "db", "flavorRef": "2", "volume": {"size": 1},
                           "configuration": "no-such-id"}},
    )  # fmt: skip
    assert reply.status_code == 404
