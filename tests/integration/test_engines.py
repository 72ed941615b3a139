"""Every engine through the same API: rights, passwords, root, configuration, restart, resize."""

from __future__ import annotations

import dataclasses
from typing import Any

import docker
import pytest

from tests.integration.engines import LOGIN_ERRORS, can_login, read, session, setting, write
from tests.integration.stack import Api, leftovers

PASSWORD, NEW_PASSWORD = "Engine-pass-42", "Changed-pass-43"


@dataclasses.dataclass(frozen=True)
class Engine:
    version: str
    superuser: str
    dynamic: tuple[str, object, str]  # a live parameter: name, value set, value the engine shows
    refused: tuple[str, object, str]  # an out-of-range value and words of the refusal
    memory_setting: str  # derived from the flavor's memory

    @property
    def has_databases(self) -> bool:
        return self.superuser != "default"


ENGINES = {
    "postgresql": Engine(
        "15", "postgres", ("work_mem", 8192, "8MB"), ("max_connections", 9, "10 to 5000"),
        "shared_buffers",
    ),
    "mariadb": Engine(
        "10.11", "root", ("max_connections", 150, "150"), ("max_connections", 5, "10 to 5000"),
        "innodb_buffer_pool_size",
    ),
    "redis": Engine(
        "7.0", "default", ("maxmemory-policy", "allkeys-lru", "allkeys-lru"),
        ("maxclients", 0, "1 to 65000"), "maxmemory",
    ),
}  # fmt: skip


def settle(api: Api, instance_id: str) -> None:
    """Wait for the instance's running tasks; each must complete."""
    for task in api.instance_tasks(instance_id):
        if task["state"] == "RUNNING":
            finished = api.wait_task(task["id"], within=120)
            assert finished["state"] == "COMPLETED", finished


def configuration(api: Api, datastore: str, engine: Engine) -> str:
    ds = {"type": datastore, "version": engine.version}
    name, bad, words = engine.refused
    refused = api.call(
        "POST", "/configurations",
        json={"configuration": {"name": "bad", "values": {name: bad}, "datastore": ds}},
    )  # fmt: skip
    assert refused.status_code == 400
    assert words in refused.json()["badRequest"]["message"]
    name, value, _shown = engine.dynamic
    made = api.call(
        "POST", "/configurations",
        json={"configuration": {"name": "tuned", "values": {name: value}, "datastore": ds}},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    return str(made.json()["configuration"]["id"])


@pytest.mark.parametrize("datastore", sorted(ENGINES))
def test_engine_day_two(api: Api, datastore: str) -> None:
    engine = ENGINES[datastore]
    config_id = configuration(api, datastore, engine)
    body: dict[str, Any] = {
        "name": f"{datastore}-it",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": engine.version},
        "configuration": config_id,
        "users": [{"name": "app", "password": PASSWORD}],
    }
    if engine.has_databases:
        body["databases"] = [{"name": "shop"}, {"name": "secret"}]
        body["users"][0]["databases"] = [{"name": "shop"}]
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    instance_id = reply.json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    where = view["connection"]
    db = "shop" if engine.has_databases else ""

    # the user made through the API has exactly the rights it was given
    with session(datastore, where, "app", PASSWORD, db) as conn:
        write(datastore, conn, "k1", "before")
        assert read(datastore, conn, "k1") == "before"
        if not engine.has_databases:
            with pytest.raises(LOGIN_ERRORS):
                conn.config_get("maxmemory")  # administration is not granted
    if engine.has_databases:
        with pytest.raises(LOGIN_ERRORS):
            with session(datastore, where, "app", PASSWORD, "secret"):
                pass
        users = api.call("GET", f"/instances/{instance_id}/users").json()["users"]
        assert [(u["name"], [d["name"] for d in u["databases"]]) for u in users] == [
            ("app", ["shop"])
        ]
    assert not can_login(datastore, where, engine.superuser, PASSWORD)

    # root: a generated password that works, and GET says so
    assert api.call("GET", f"/instances/{instance_id}/root").json() == {"rootEnabled": False}
    root = api.call("POST", f"/instances/{instance_id}/root")
    assert root.status_code == 200, root.text
    superuser = root.json()["user"]
    assert superuser["name"] == engine.superuser
    assert api.call("GET", f"/instances/{instance_id}/root").json() == {"rootEnabled": True}
    name, _value, shown = engine.dynamic
    with session(datastore, where, superuser["name"], superuser["password"]) as conn:
        assert setting(datastore, conn, name) == shown
        memory_before = setting(datastore, conn, engine.memory_setting)

    # a new password, and only the new one
    change = {"users": [{"name": "app", "password": NEW_PASSWORD}]}
    assert api.call("PUT", f"/instances/{instance_id}/users", json=change).status_code == 202
    settle(api, instance_id)
    assert not can_login(datastore, where, "app", PASSWORD)
    assert can_login(datastore, where, "app", NEW_PASSWORD)

    if engine.has_databases:
        access = f"/instances/{instance_id}/users/app/databases"
        assert api.call("PUT", access, json={"databases": [{"name": "secret"}]}).status_code == 202
        settle(api, instance_id)
        assert api.call("GET", access).json()["databases"] == [
            {"name": "secret"},
            {"name": "shop"},
        ]
        with session(datastore, where, "app", NEW_PASSWORD, "secret") as conn:
            write(datastore, conn, "s1", "granted")
        assert api.call("DELETE", f"{access}/secret").status_code == 202
        settle(api, instance_id)
        with pytest.raises(LOGIN_ERRORS):
            with session(datastore, where, "app", NEW_PASSWORD, "secret"):
                pass

    # restart keeps the data and the address
    assert (
        api.call("POST", f"/instances/{instance_id}/action", json={"restart": {}}).status_code
        == 202
    )
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    assert view["connection"] == where
    with session(datastore, where, "app", NEW_PASSWORD, db) as conn:
        assert read(datastore, conn, "k1") == "before"

    # flavor resize: new container limits and a re-derived memory setting, data intact
    resize = {"resize": {"flavorRef": "2"}}
    assert api.call("POST", f"/instances/{instance_id}/action", json=resize).status_code == 202
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert (view["status"], view["flavor"]["id"]) == ("ACTIVE", "2"), view.get("fault")
    container = docker.from_env().containers.get(f"cellar-{instance_id}")
    assert container.attrs["HostConfig"]["Memory"] == 512 * 1024 * 1024
    with session(datastore, where, superuser["name"], superuser["password"]) as conn:
        assert setting(datastore, conn, engine.memory_setting) != memory_before
    with session(datastore, where, "app", NEW_PASSWORD, db) as conn:
        assert read(datastore, conn, "k1") == "before"

    logs = api.call("GET", f"/instances/{instance_id}/log").json()["logs"]
    assert [log["name"] for log in logs] == [datastore]

    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
    assert api.call("DELETE", f"/configurations/{config_id}").status_code == 202
    assert leftovers(api.project) == []


def test_redis_refuses_named_databases(api: Api) -> None:
    refused = api.call(
        "POST", "/instances",
        json={"instance": {"name": "r", "flavorRef": "1", "volume": {"size": 1},
                           "datastore": {"type": "redis"}, "databases": [{"name": "x"}]}},
    )  # fmt: skip
    assert refused.status_code == 422
    assert "no named databases" in refused.json()["unprocessableEntity"]["message"]
