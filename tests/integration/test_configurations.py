"""A configuration group on a real PostgreSQL: dynamic values live, static ones after restart."""

from __future__ import annotations

import psycopg

from tests.integration.stack import Api

PASSWORD = "Config-pass-7"


def show(login: dict[str, object], name: str) -> str:
    with psycopg.connect(**login, dbname="conf", connect_timeout=10) as conn:  # type: ignore[arg-type]
        row = conn.execute(f"SHOW {name}").fetchone()  # names come from this test only
    assert row is not None
    return str(row[0])


def test_group_values_reach_the_engine(api: Api) -> None:
    made = api.call(
        "POST",
        "/configurations",
        json={"configuration": {"name": "tuned", "values": {"work_mem": 8192},
                                "datastore": {"type": "postgresql", "version": "15"}}},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    config_id = made.json()["configuration"]["id"]
    refused = api.call(
        "PATCH", f"/configurations/{config_id}",
        json={"configuration": {"values": {"max_connections": 9}}},
    )  # fmt: skip
    assert refused.status_code == 400
    assert "10 to 5000" in refused.json()["badRequest"]["message"]

    body = {
        "name": "configured",
        "flavorRef": "1",
        "volume": {"size": 1},
        "configuration": config_id,
        "databases": [{"name": "conf"}],
        "users": [{"name": "tuner", "password": PASSWORD, "databases": [{"name": "conf"}]}],
    }
    instance_id = api.call("POST", "/instances", json={"instance": body}).json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    where = view["connection"]
    login = {"host": where["host"], "port": where["port"], "user": "tuner", "password": PASSWORD}
    assert show(login, "work_mem") == "8MB"

    change = {"configuration": {"values": {"max_connections": 150}}}
    assert api.call("PATCH", f"/configurations/{config_id}", json=change).status_code == 202
    view = api.wait_instance(instance_id, {"RESTART_REQUIRED", "ERROR"}, within=60)
    assert view["status"] == "RESTART_REQUIRED"
    assert show(login, "work_mem") == "8MB"
    assert show(login, "max_connections") == "100"
    assert (
        api.call("POST", f"/instances/{instance_id}/action", json={"restart": {}}).status_code
        == 202
    )
    assert api.wait_instance(instance_id, {"ACTIVE", "ERROR"})["status"] == "ACTIVE"
    assert show(login, "max_connections") == "150"

    detach = {"instance": {"configuration": None}}
    assert api.call("PUT", f"/instances/{instance_id}", json=detach).status_code == 202
    for task in api.instance_tasks(instance_id):
        if task["state"] == "RUNNING":
            assert api.wait_task(task["id"])["state"] == "COMPLETED"
    assert show(login, "work_mem") == "4MB"
    assert api.call("DELETE", f"/configurations/{config_id}").status_code == 202
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
