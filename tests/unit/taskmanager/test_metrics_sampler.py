"""Beat's sampler: one sample per instance in service, none from a mute agent or a
scratch copy, and old samples pruned."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from cellar import metrics
from cellar.errors import AgentTimeout
from cellar.models import Instance, MetricSample, utcnow
from taskmanager import metrics_sampler


def instance(services: Any, status: str = "ACTIVE", **fields: Any) -> str:
    with services.db.session() as session:
        row = Instance(
            project_id="p1", name="db", flavor_id="2", datastore="postgresql",
            datastore_version="15", volume_size=1, status=status, agent_port=40001, **fields,
        )  # fmt: skip
        session.add(row)
        session.commit()
        return row.id


def samples(services: Any) -> list[tuple[str, dict[str, Any]]]:
    with services.db.session() as session:
        rows = session.scalars(select(MetricSample).order_by(MetricSample.id))
        return [(row.instance_id, row.values) for row in rows]


def test_each_instance_in_service_gets_one_sample(world: Any) -> None:
    services, _compute, agent, _queue = world
    agent.metrics = {"connections": 7.0, "transactions_total": 120.0}
    active = instance(services)
    instance(services, status="BUILD")
    instance(services, purpose="verify")
    instance(services, deleted_at=utcnow())
    assert metrics_sampler.sample(services) == 1
    assert samples(services) == [(active, {"connections": 7.0, "transactions_total": 120.0})]


def test_a_mute_agent_gives_no_sample(world: Any) -> None:
    services, _compute, agent, _queue = world
    instance(services)
    agent.failing["get_metrics"] = AgentTimeout("no answer")
    assert metrics_sampler.sample(services) == 0
    assert samples(services) == []


def test_samples_older_than_a_day_are_removed(world: Any) -> None:
    services, _compute, _agent, _queue = world
    active = instance(services)
    with services.db.session() as session:
        old = utcnow() - metrics.KEEP - dt.timedelta(minutes=1)
        session.add(MetricSample(instance_id=active, taken=old, values={"connections": 1}))
        session.commit()
    metrics_sampler.sample(services)
    assert [values["connections"] for _id, values in samples(services)] == [3.0]
