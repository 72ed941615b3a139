"""The metric history: totals become rates, a counter that went down shows a gap, and
samples past a day are pruned."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cellar import metrics
from cellar.models import MetricSample

T0 = dt.datetime(2026, 12, 4, 10, 0, 0)


def add(world: Any, seconds: float, **values: float) -> None:
    with world[0].db.session() as session:
        session.add(
            MetricSample(instance_id="i1", taken=T0 + dt.timedelta(seconds=seconds), values=values)
        )
        session.commit()


def test_totals_become_rates_between_neighbouring_samples(world: Any) -> None:
    add(world, 0, connections=3, transactions_total=100)
    add(world, 10, connections=4, transactions_total=150)
    add(world, 20, connections=5, transactions_total=20)  # the engine restarted
    add(world, 30, connections=5, transactions_total=40)
    with world[0].db.session() as session:
        points = metrics.series(session, "i1", T0 - dt.timedelta(seconds=1))
    assert [p["connections"] for p in points] == [3, 4, 5, 5]
    assert [p["transactions_per_second"] for p in points] == [None, 5.0, None, 2.0]
    assert points[1]["at"] == "2026-12-04T10:00:10Z"


def test_the_sample_before_the_window_gives_the_first_rate(world: Any) -> None:
    add(world, 0, commands_total=0)
    add(world, 10, commands_total=30)
    with world[0].db.session() as session:
        points = metrics.series(session, "i1", T0 + dt.timedelta(seconds=5))
    assert points == [{"at": "2026-12-04T10:00:10Z", "commands_per_second": 3.0}]


def test_prune_keeps_a_day(world: Any) -> None:
    add(world, 0, connections=1)
    add(world, 3600, connections=2)
    with world[0].db.session() as session:
        removed = metrics.prune(session, T0 + metrics.KEEP + dt.timedelta(seconds=1))
        session.commit()
        left = [row.values["connections"] for row in session.query(MetricSample)]
    assert (removed, left) == (1, [2])
