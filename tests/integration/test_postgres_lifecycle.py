"""A PostgreSQL instance from the REST API to a real container and back."""

from __future__ import annotations

import subprocess

import docker
import psycopg

from tests.integration.stack import Api, Stack, leftovers

PASSWORD = "Sup3r-secret-pw"


def test_create_use_change_and_delete(api: Api, stack: Stack) -> None:
    body = {
        "instance": {
            "name": "orders",
            "flavorRef": "2",
            "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"},
            "databases": [{"name": "shop"}, {"name": "stats"}],
            "users": [{"name": "alice", "password": PASSWORD, "databases": [{"name": "shop"}]}],
        }
    }
    headers = {"X-Request-ID": "req-lifecycle-1", "Idempotency-Key": "lifecycle-create"}
    reply = api.call("POST", "/instances", json=body, headers=headers)
    assert reply.status_code == 202, reply.text
    instance_id = reply.json()["instance"]["id"]
    again = api.call("POST", "/instances", json=body, headers=headers)  # a client's retry
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["instance"]["id"] == instance_id
    assert [i["id"] for i in api.call("GET", "/instances").json()["instances"]] == [instance_id]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    assert view["operating_status"] == "HEALTHY"
    host, port = view["connection"]["host"], view["connection"]["port"]

    with psycopg.connect(
        host=host, port=port, user="alice", password=PASSWORD, dbname="shop", connect_timeout=10
    ) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        conn.execute("INSERT INTO orders (item) VALUES ('apples'), ('pears')")
        conn.commit()
        rows = conn.execute("SELECT item FROM orders ORDER BY id").fetchall()
    assert rows == [("apples",), ("pears",)]

    databases = api.call("GET", f"/instances/{instance_id}/databases").json()["databases"]
    assert {d["name"] for d in databases} == {"shop", "stats"}
    users = api.call("GET", f"/instances/{instance_id}/users").json()["users"]
    assert [(u["name"], [d["name"] for d in u["databases"]]) for u in users] == [
        ("alice", ["shop"])
    ]

    assert (
        api.call(
            "POST", f"/instances/{instance_id}/databases", json={"databases": [{"name": "extra"}]}
        ).status_code
        == 202
    )
    new_user = {
        "users": [{"name": "bob", "password": "b0b-pass", "databases": [{"name": "extra"}]}]
    }
    assert api.call("POST", f"/instances/{instance_id}/users", json=new_user).status_code == 202
    for task in api.instance_tasks(instance_id):
        if task["state"] == "RUNNING":
            assert api.wait_task(task["id"])["state"] == "COMPLETED"
    with psycopg.connect(
        host=host, port=port, user="bob", password="b0b-pass", dbname="extra", connect_timeout=10
    ) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("extra",)

    assert api.call("DELETE", f"/instances/{instance_id}/users/bob").status_code == 202
    assert api.call("DELETE", f"/instances/{instance_id}/databases/extra").status_code == 202
    for task in api.instance_tasks(instance_id):
        if task["state"] == "RUNNING":
            assert api.wait_task(task["id"])["state"] == "COMPLETED"
    names = {
        d["name"]
        for d in api.call("GET", f"/instances/{instance_id}/databases").json()["databases"]
    }
    assert names == {"shop", "stats"}

    # one request id followed from the API through the worker into the agent
    logs = subprocess.run(
        ["docker", "logs", f"cellar-{instance_id}"], capture_output=True, text=True, check=True
    )
    assert "req-lifecycle-1" in logs.stdout + logs.stderr
    assert "req-lifecycle-1" in stack.log_text("worker")
    assert PASSWORD not in logs.stdout + logs.stderr
    for name in ("api", "worker", "beat"):
        assert PASSWORD not in stack.log_text(name)

    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
    assert leftovers(api.project) == []


def test_restart_keeps_data_and_address(api: Api) -> None:
    body = {
        "name": "restartme",
        "flavorRef": "1",
        "volume": {"size": 1},
        "databases": [{"name": "keep"}],
        "users": [{"name": "keeper", "password": PASSWORD, "databases": [{"name": "keep"}]}],
    }
    instance_id = api.call("POST", "/instances", json={"instance": body}).json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    where = view["connection"]
    login = {"host": where["host"], "port": where["port"], "user": "keeper", "password": PASSWORD}
    with psycopg.connect(**login, dbname="keep", connect_timeout=10) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    reply = api.call("POST", f"/instances/{instance_id}/action", json={"restart": {}})
    assert reply.status_code == 202
    assert api.call("GET", f"/instances/{instance_id}").json()["instance"]["status"] in (
        "REBOOT",
        "ACTIVE",
    )
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    assert view["connection"] == where
    tasks = [t for t in api.instance_tasks(instance_id) if t["workflow"] == "restart"]
    assert [t["state"] for t in tasks] == ["COMPLETED"]
    logs = api.call("GET", f"/instances/{instance_id}/log").json()["logs"]
    assert [(log["name"], log["size"] > 0) for log in logs] == [("postgresql", True)]
    tail = api.call("GET", f"/instances/{instance_id}/log/postgresql?lines=50").json()["log"]
    assert 0 < len(tail["lines"]) <= 50
    assert any("shut down" in line or "shutting down" in line for line in tail["lines"])
    missing = api.call("GET", f"/instances/{instance_id}/log/nope")
    assert missing.status_code == 404 and "postgresql" in missing.json()["itemNotFound"]["message"]
    with psycopg.connect(**login, dbname="keep", connect_timeout=10) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"


def test_flavor_resize_changes_limits_and_shared_buffers(api: Api) -> None:
    body = {
        "name": "growing",
        "flavorRef": "1",
        "volume": {"size": 1},
        "databases": [{"name": "grow"}],
        "users": [{"name": "grower", "password": PASSWORD, "databases": [{"name": "grow"}]}],
    }
    instance_id = api.call("POST", "/instances", json={"instance": body}).json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    where = view["connection"]
    login = {"host": where["host"], "port": where["port"], "user": "grower", "password": PASSWORD}
    with psycopg.connect(**login, dbname="grow", connect_timeout=10) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("64MB",)
        conn.execute("CREATE TABLE g (v int)")
        conn.execute("INSERT INTO g VALUES (1), (2)")
    reply = api.call(
        "POST", f"/instances/{instance_id}/action", json={"resize": {"flavorRef": "3"}}
    )
    assert reply.status_code == 202
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert (view["status"], view["flavor"]["id"]) == ("ACTIVE", "3"), view.get("fault")
    container = docker.from_env().containers.get(f"cellar-{instance_id}")
    assert container.attrs["HostConfig"]["Memory"] == 1024 * 1024 * 1024
    assert container.attrs["HostConfig"]["CpuQuota"] == 100_000
    with psycopg.connect(**login, dbname="grow", connect_timeout=10) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("256MB",)
        assert conn.execute("SELECT count(*) FROM g").fetchone() == (2,)
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
