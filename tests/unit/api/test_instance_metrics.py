"""``GET /instances/{id}/metrics``: the window of samples, rates, and bad queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from cellar.models import MetricSample, utcnow
from tests.unit.api.support import client_for
from tests.unit.api.test_user_access import BASE, active


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def seed(world: Any, instance_id: str, minutes_ago: float, **values: float) -> None:
    with world[0].db.session() as session:
        taken = utcnow() - dt.timedelta(minutes=minutes_ago)
        session.add(MetricSample(instance_id=instance_id, taken=taken, values=values))
        session.commit()


def test_the_last_hour_comes_back_with_rates(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    seed(world, instance_id, 90, connections=1, transactions_total=0)
    seed(world, instance_id, 30, connections=2, transactions_total=600)
    seed(world, instance_id, 20, connections=4, transactions_total=1800)
    reply = client.get(f"{BASE}/instances/{instance_id}/metrics")
    assert reply.status_code == 200, reply.get_json()
    shown = reply.get_json()["metrics"]
    assert shown["interval_seconds"] == 10.0 and shown["datastore"] == "postgresql"
    points = shown["samples"]
    assert [p["connections"] for p in points] == [2, 4]
    assert [p["transactions_per_second"] for p in points] == [pytest.approx(600 / 3600, 0.01), 2.0]
    wider = client.get(f"{BASE}/instances/{instance_id}/metrics?minutes=120").get_json()
    assert len(wider["metrics"]["samples"]) == 3


def test_since_gives_only_newer_samples(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    seed(world, instance_id, 5, connections=1)
    seed(world, instance_id, 1, connections=2)
    since = (utcnow() - dt.timedelta(minutes=3)).isoformat() + "Z"
    points = client.get(
        f"{BASE}/instances/{instance_id}/metrics", query_string={"since": since}
    ).get_json()["metrics"]["samples"]
    assert [p["connections"] for p in points] == [2]


@pytest.mark.parametrize(
    ("query", "says"),
    [("minutes=0", "minutes must be an integer from 1 to 1440"), ("since=yesterday", "ISO 8601")],
)
def test_bad_windows_are_refused(client: FlaskClient, world: Any, query: str, says: str) -> None:
    instance_id = active(client, world)
    reply = client.get(f"{BASE}/instances/{instance_id}/metrics?{query}")
    assert reply.status_code == 400
    assert says in reply.get_json()["badRequest"]["message"]


def test_another_projects_instance_is_not_found(client: FlaskClient, world: Any) -> None:
    reply = client.get(f"{BASE}/instances/nope/metrics")
    assert reply.status_code == 404
