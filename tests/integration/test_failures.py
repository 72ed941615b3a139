"""Failures end in a clear state: a killed worker resumes, a missing image is an ERROR."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.integration.stack import Api, Stack, leftovers

BODY = {
    "name": "resilient",
    "flavorRef": "1",
    "volume": {"size": 1},
    "databases": [{"name": "app"}],
    "users": [{"name": "app", "password": "app-pass-1", "databases": [{"name": "app"}]}],
}


def test_a_worker_killed_mid_provisioning_leaves_no_orphan(api: Api, stack: Stack) -> None:
    instance_id = api.call("POST", "/instances", json={"instance": BODY}).json()["instance"]["id"]
    end = time.monotonic() + 60
    step = ""
    while time.monotonic() < end:
        task = api.call("GET", f"/instances/{instance_id}").json()["instance"].get("task") or {}
        step = task.get("step", "")
        if step == "prepare" or not task:  # the container runs; the engine is being set up
            break
        time.sleep(0.02)
    stack.kill("worker")
    killed_at = step
    time.sleep(1.0)
    assert api.call("GET", f"/instances/{instance_id}").json()["instance"]["status"] in (
        "BUILD",
        "ACTIVE",
    )
    stack.start("worker")
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"}, within=240)
    assert view["status"] == "ACTIVE", f"killed at {killed_at}: {view.get('fault')}"
    conn_info = view["connection"]
    with psycopg.connect(
        host=conn_info["host"], port=conn_info["port"], user="app", password="app-pass-1",
        dbname="app", connect_timeout=10,
    ) as conn:  # fmt: skip
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
    assert leftovers(api.project) == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"instance": {**BODY, "flavorRef": "42"}}, 400, "flavorRef"),
        ({"instance": {**BODY, "name": None}}, 400, "name"),
        ({"instance": {**BODY, "datastore": {"type": "db2"}}}, 400, "datastore"),
        ({"instance": {**BODY, "databases": [{"name": "a'b"}]}}, 400, "database name"),
        ({"instance": {**BODY, "databases": [{"name": "a;drop"}]}}, 400, "database name"),
        ({"instance": {**BODY, "users": [{"name": 'x"y', "password": "p"}]}}, 400, "user name"),
        ({"wrong": {}}, 400, "instance"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    api: Api, body: dict[str, object], status: int, words: str
) -> None:
    reply = api.call("POST", "/instances", json=body)
    assert reply.status_code == status
    assert words in reply.json()["badRequest"]["message"]


def test_malformed_json_and_unknown_ids(api: Api) -> None:
    reply = api.call(
        "POST", "/instances", data="{oops", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert "JSON" in reply.json()["badRequest"]["message"]
    missing = api.call("GET", "/instances/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "itemNotFound" in missing.json()
    assert api.call("DELETE", "/instances/nope").status_code == 404
