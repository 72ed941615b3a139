"""Metrics from real engines: each instance's samples through the history route, and
Prometheus' text at /metrics for the scrape token, for every engine."""

from __future__ import annotations

import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import Api, Stack
from tests.integration.test_backups import create

DATASTORES = ("postgresql", "mariadb", "redis")


def samples(api: Api, instance_id: str) -> list[dict[str, Any]]:
    reply = api.call("GET", f"/instances/{instance_id}/metrics?minutes=10")
    assert reply.status_code == 200, reply.text
    return list(reply.json()["metrics"]["samples"])


def scrape(stack: Stack, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{stack.url}/metrics", headers=headers, timeout=30)


def test_every_engine_reports_its_counters(api: Api, stack: Stack) -> None:
    made = {datastore: create(api, datastore) for datastore in DATASTORES}
    for datastore, view in made.items():
        assert view["status"] == "ACTIVE", (datastore, view.get("fault"))
    end = time.monotonic() + 90
    found: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < end:
        found = {d: samples(api, v["id"]) for d, v in made.items()}
        if all(len(points) >= 2 for points in found.values()):
            break
        time.sleep(2)
    for datastore, points in found.items():
        assert len(points) >= 2, (datastore, points)
        last = points[-1]
        assert last["connections"] >= 1, (datastore, last)
        assert 0.0 <= last["cache_hit_ratio"] <= 1.0, (datastore, last)
        assert last["memory_bytes"] > 1024 * 1024, (datastore, last)
        assert last["uptime_seconds"] > 0, (datastore, last)
        rate = "commands_per_second" if datastore == "redis" else "transactions_per_second"
        assert last[rate] is not None and last[rate] >= 0, (datastore, last)
        assert "replication_lag_seconds" not in last, (datastore, last)

    assert scrape(stack, {}).status_code == 401
    member = str(api.session.headers["X-Auth-Token"])
    assert scrape(stack, {"X-Auth-Token": member}).status_code == 403
    assert stack.identity is not None
    assert scrape(stack, {"X-Auth-Token": stack.identity.admin.token}).status_code == 200
    assert scrape(stack, {"Authorization": "Bearer not-the-token"}).status_code == 401
    token = (stack.home / "metrics-token").read_text().strip()  # made by the first try
    reply = scrape(stack, {"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    shown = {
        s.labels["instance"]: s.labels
        for s in families["cellar_instance_connections"].samples
        if s.labels.get("project") == api.project
    }
    for datastore, view in made.items():
        assert shown[view["id"]]["datastore"] == datastore
        assert shown[view["id"]]["role"] == "standalone"
    active = [
        s.value
        for s in families["cellar_instances"].samples
        if s.labels == {"datastore": "postgresql", "status": "ACTIVE"}
    ]
    assert active and active[0] >= 1
    assert any(s.value > 0 for s in families["cellar_api_request_duration_seconds"].samples)
    for view in made.values():
        api.call("DELETE", f"/instances/{view['id']}")
    for view in made.values():
        assert api.wait_instance(view["id"], {"GONE", "ERROR"})["status"] == "GONE"
