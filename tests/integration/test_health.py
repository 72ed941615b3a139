"""operating_status follows the engine: a stopped container turns SHUTDOWN, then HEALTHY again."""

from __future__ import annotations

import time

import docker

from tests.integration.stack import Api


def wait_operating(api: Api, instance_id: str, wanted: str, within: float = 60.0) -> str:
    end = time.monotonic() + within
    seen = ""
    while time.monotonic() < end:
        seen = api.call("GET", f"/instances/{instance_id}").json()["instance"]["operating_status"]
        if seen == wanted:
            return seen
        time.sleep(0.5)
    return seen


def test_operating_status_tracks_a_stopped_and_restarted_container(api: Api) -> None:
    body = {"name": "watched", "flavorRef": "1", "volume": {"size": 1}}
    instance_id = api.call("POST", "/instances", json={"instance": body}).json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    container = docker.from_env().containers.get(f"cellar-{instance_id}")
    container.stop(timeout=10)
    assert wait_operating(api, instance_id, "SHUTDOWN") == "SHUTDOWN"
    assert api.call("GET", f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE"
    container.start()
    assert wait_operating(api, instance_id, "HEALTHY") == "HEALTHY"
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
