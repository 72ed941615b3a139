"""The bounded history of each instance's engine counters, and how it is read.

Beat asks every ACTIVE instance's agent for its counters every ``EVERY`` seconds
(``taskmanager.metrics_sampler``) and keeps the samples for ``KEEP``. Readers (the
``/instances/{id}/metrics`` route, the dashboard's charts) get :func:`series`: counters
whose names end in ``_total`` become rates per second between neighbouring samples, so
a restart of the engine (a counter going down) shows as a gap, not a negative rate.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellar.models import MetricSample, utcnow

EVERY = 10.0  # seconds between samples of one instance
KEEP = dt.timedelta(hours=24)
MAX_MINUTES = int(KEEP.total_seconds() // 60)


def rate_name(name: str) -> str:
    """``transactions_total`` -> ``transactions_per_second``."""
    return name.removesuffix("_total") + "_per_second"


def series(session: Session, instance_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The samples taken after ``since``, oldest first, with totals turned into rates.

    The sample just before ``since`` is read too, so the first returned one has its rates.
    """
    before = session.scalars(
        select(MetricSample)
        .where(MetricSample.instance_id == instance_id, MetricSample.taken <= since)
        .order_by(MetricSample.taken.desc())
        .limit(1)
    ).first()
    rows = session.scalars(
        select(MetricSample)
        .where(MetricSample.instance_id == instance_id, MetricSample.taken > since)
        .order_by(MetricSample.taken)
    ).all()
    points: list[dict[str, Any]] = []
    previous = before
    for row in rows:
        point: dict[str, Any] = {"at": row.taken.isoformat(timespec="seconds") + "Z"}
        for name, value in sorted(row.values.items()):
            if not name.endswith("_total"):
                point[name] = value
                continue
            point[rate_name(name)] = _rate(previous, row, name)
        points.append(point)
        previous = row
    return points


def _rate(previous: MetricSample | None, row: MetricSample, name: str) -> float | None:
    if previous is None or name not in previous.values:
        return None
    seconds = (row.taken - previous.taken).total_seconds()
    grown = float(row.values[name]) - float(previous.values[name])
    if seconds <= 0 or grown < 0:
        return None
    return round(grown / seconds, 3)


def prune(session: Session, now: dt.datetime | None = None) -> int:
    """Remove the samples older than ``KEEP``; returns how many."""
    cutoff = (now or utcnow()) - KEEP
    result = session.execute(delete(MetricSample).where(MetricSample.taken < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
