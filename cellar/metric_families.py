"""The metric families of ``GET /metrics`` that come from the metadata database.

:class:`MetadataCollector` reads them at scrape time, in one transaction: every query
groups in the database or stops at ``ROW_LIMIT`` rows, so a scrape costs a few small
queries however many tasks and backups there are. The families, and their labels:

    cellar_instances{datastore,status}                              gauge
    cellar_task_duration_seconds{workflow,state}                    histogram
    cellar_task_final_step_duration_seconds{workflow,step,state}    histogram
    cellar_task_step_running_seconds{workflow,step}                 gauge
    cellar_failed_steps_total{workflow,step}                        counter
    cellar_failovers_total{kind}                                    counter
    cellar_backups{datastore,status}                                gauge
    cellar_backup_newest_age_seconds{instance,project,datastore}    gauge
    cellar_archive_lag_seconds{instance,project,datastore}          gauge
    cellar_replication_lag_seconds{instance,project,datastore}      gauge
    cellar_replication_lag_bytes{instance,project,datastore}        gauge
    cellar_replication_source_connected{instance,project,datastore} gauge
    cellar_instance_<name>{instance,project,datastore,role}         gauge, or counter
                                                                    for a name in _total

A task row keeps when its current step began, not how long each step took, so the step
families are what the rows can tell: how long the step a task ended at took (its last
step, or the one it failed or was stopped at), and how long running tasks have been in
their current step. Backup verification's scratch instances are left out everywhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import ColumnElement, and_, case, exists, extract, func, select, text
from sqlalchemy.orm import Session, aliased

from cellar import catalog
from cellar.db import Database
from cellar.models import (
    ArchiveSegment,
    Backup,
    Instance,
    MetricSample,
    ReplicationEvent,
    Task,
    utcnow,
)
from cellar.status import BackupStatus, InstanceStatus, TaskState

logger = logging.getLogger(__name__)

ROW_LIMIT = 10_000  # rows of a per-instance family; past it a scrape shows the first ones
STATEMENT_TIMEOUT_MS = 5_000  # PostgreSQL stops a scrape's query after this
SAMPLE_FRESH = 60.0  # seconds: an older engine sample is not shown
TASK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
STEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FINISHED = (TaskState.COMPLETED.value, TaskState.FAILED.value, TaskState.CANCELLED.value)
FAILOVER_KINDS = ("failover", "automatic_failover")  # ReplicationEvent.kind, not switchover
ARCHIVED = (  # the statuses whose archive beat collects (taskmanager.archive.COLLECTED)
    InstanceStatus.ACTIVE.value,
    InstanceStatus.RESTART_REQUIRED.value,
    InstanceStatus.BACKUP.value,
)
PER_INSTANCE = ["instance", "project", "datastore"]
SAMPLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class MetadataCollector(Collector):
    """The families above, read afresh at each ``collect()``; register it in a scrape's
    registry (it has no ``describe``, so registering it reads nothing)."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.db.session() as session:
            if _dialect(session) == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            families = [
                instance_counts(session),
                *task_families(session, now),
                failover_count(session),
                *backup_families(session, now),
                archive_lag(session, now),
                *replication_families(session),
                *engine_families(session, now),
            ]
        yield from families


def instance_counts(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "cellar_instances",
        "Instances not deleted, by datastore and status.",
        labels=["datastore", "status"],
    )
    counts = {(name, status.value): 0 for name in catalog.DATASTORES for status in InstanceStatus}
    rows = session.execute(
        select(Instance.datastore, Instance.status, func.count())
        .where(Instance.deleted_at.is_(None), Instance.purpose.is_(None))
        .group_by(Instance.datastore, Instance.status)
    )
    for datastore, status, count in rows:
        counts[(datastore, status)] = count
    for labels, count in sorted(counts.items()):
        family.add_metric(labels, count)
    return family


def task_families(session: Session, now: dt.datetime) -> list[Metric]:
    ended = (Task.state.in_(FINISHED), Task.finished_at.is_not(None))
    whole = func.coalesce(Task.duration, _seconds(session, Task.finished_at, Task.created))
    durations = histogram(
        "cellar_task_duration_seconds",
        "Finished tasks, from their creation to their end, by workflow and how they ended.",
        session,
        [Task.workflow, Task.state],
        whole,
        TASK_BUCKETS,
        ended,
    )
    final_steps = histogram(
        "cellar_task_final_step_duration_seconds",
        "Finished tasks: how long the step they ended at took (the last step when "
        "completed, the one they failed or were stopped at otherwise).",
        session,
        [Task.workflow, Task.step, Task.state],
        _seconds(session, Task.finished_at, Task.step_started_at),
        STEP_BUCKETS,
        ended,
    )
    running = GaugeMetricFamily(
        "cellar_task_step_running_seconds",
        "Running tasks: how long the one longest in its current step has been in it.",
        labels=["workflow", "step"],
    )
    oldest = session.execute(
        select(Task.workflow, Task.step, func.min(Task.step_started_at))
        .where(Task.state == TaskState.RUNNING.value)
        .group_by(Task.workflow, Task.step)
    )
    for workflow, step, since in oldest:
        running.add_metric([workflow, step], max((now - since).total_seconds(), 0.0))
    failed = CounterMetricFamily(
        "cellar_failed_steps_total",
        "Failed tasks, by workflow and the step they failed at.",
        labels=["workflow", "step"],
    )
    counts = session.execute(
        select(Task.workflow, Task.step, func.count())
        .where(Task.state == TaskState.FAILED.value)
        .group_by(Task.workflow, Task.step)
    )
    for workflow, step, count in counts:
        failed.add_metric([workflow, step], count)
    return [durations, final_steps, running, failed]


def failover_count(session: Session) -> Metric:
    family = CounterMetricFamily(
        "cellar_failovers_total",
        "Failovers started, asked for (failover) or by the monitor (automatic_failover).",
        labels=["kind"],
    )
    counts = dict.fromkeys(FAILOVER_KINDS, 0)
    rows = session.execute(
        select(ReplicationEvent.kind, func.count())
        .where(ReplicationEvent.kind.in_(FAILOVER_KINDS))
        .group_by(ReplicationEvent.kind)
    )
    counts.update({kind: count for kind, count in rows})
    for kind, count in counts.items():
        family.add_metric([kind], count)
    return family


def backup_families(session: Session, now: dt.datetime) -> list[Metric]:
    by_status = GaugeMetricFamily(
        "cellar_backups",
        "Backups not deleted, by datastore and status.",
        labels=["datastore", "status"],
    )
    counts = {(name, status.value): 0 for name in catalog.DATASTORES for status in BackupStatus}
    counted = session.execute(
        select(Backup.datastore, Backup.status, func.count())
        .where(Backup.deleted_at.is_(None))
        .group_by(Backup.datastore, Backup.status)
    )
    for datastore, status, count in counted:
        counts[(datastore, status)] = count
    for labels, count in sorted(counts.items()):
        by_status.add_metric(labels, count)
    newest = GaugeMetricFamily(
        "cellar_backup_newest_age_seconds",
        "Seconds since the newest completed backup of each instance ended.",
        labels=PER_INSTANCE,
    )
    ended = func.max(func.coalesce(Backup.finished_at, Backup.created))
    rows = _limited(
        session,
        select(Instance.id, Instance.project_id, Instance.datastore, ended)
        .join(Backup, Backup.instance_id == Instance.id)
        .where(
            *_live(),
            Backup.status == BackupStatus.COMPLETED.value,
            Backup.deleted_at.is_(None),
        )
        .group_by(Instance.id, Instance.project_id, Instance.datastore)
        .order_by(Instance.id),
        "cellar_backup_newest_age_seconds",
    )
    for instance_id, project_id, datastore, when in rows:
        newest.add_metric([instance_id, project_id, datastore], _age(now, when))
    return [by_status, newest]


def archive_lag(session: Session, now: dt.datetime) -> Metric:
    family = GaugeMetricFamily(
        "cellar_archive_lag_seconds",
        "Seconds since the newest file of each running instance's continuous archive closed.",
        labels=PER_INSTANCE,
    )
    rows = _limited(
        session,
        select(
            Instance.id,
            Instance.project_id,
            Instance.datastore,
            Instance.datastore_version,
            func.max(ArchiveSegment.closed_at),
        )
        .join(ArchiveSegment, ArchiveSegment.instance_id == Instance.id)
        .where(*_live(), Instance.status.in_(ARCHIVED))
        .group_by(Instance.id, Instance.project_id, Instance.datastore, Instance.datastore_version)
        .order_by(Instance.id),
        "cellar_archive_lag_seconds",
    )
    for instance_id, project_id, datastore, version, closed in rows:
        if _archives(datastore, version):
            family.add_metric([instance_id, project_id, datastore], _age(now, closed))
    return family


def replication_families(session: Session) -> list[Metric]:
    """Each replica's replication as the monitor last saw it (``Instance.replication``)."""
    lag = GaugeMetricFamily(
        "cellar_replication_lag_seconds",
        "Seconds each replica is behind its primary, as the monitor last saw it.",
        labels=PER_INSTANCE,
    )
    lag_bytes = GaugeMetricFamily(
        "cellar_replication_lag_bytes",
        "Bytes of its primary's log each replica has not replayed, as last seen.",
        labels=PER_INSTANCE,
    )
    connected = GaugeMetricFamily(
        "cellar_replication_source_connected",
        "1 when each replica had a live link to its primary when last seen, else 0.",
        labels=PER_INSTANCE,
    )
    rows = _limited(
        session,
        select(Instance.id, Instance.project_id, Instance.datastore, Instance.replication)
        .where(*_live(), Instance.replica_of_id.is_not(None), Instance.replication.is_not(None))
        .order_by(Instance.id),
        "cellar_replication_lag_seconds",
    )
    for instance_id, project_id, datastore, state in rows:
        labels = [instance_id, project_id, datastore]
        if not isinstance(state, dict):
            continue
        if _is_number(state.get("lag_seconds")):
            lag.add_metric(labels, state["lag_seconds"])
        if _is_number(state.get("lag_bytes")):
            lag_bytes.add_metric(labels, state["lag_bytes"])
        if isinstance(state.get("source_connected"), bool):
            connected.add_metric(labels, float(state["source_connected"]))
    return [lag, lag_bytes, connected]


def engine_families(session: Session, now: dt.datetime) -> list[Metric]:
    """``cellar_instance_<name>`` for each number in the newest sample of each live
    instance, if it is at most ``SAMPLE_FRESH`` seconds old; a name that does not fit
    a metric name is skipped."""
    newest = (
        select(MetricSample.instance_id, func.max(MetricSample.taken).label("taken"))
        .where(MetricSample.taken >= now - dt.timedelta(seconds=SAMPLE_FRESH))
        .group_by(MetricSample.instance_id)
        .subquery()
    )
    replica = aliased(Instance)
    has_replicas = (
        exists()
        .where(replica.replica_of_id == Instance.id, replica.deleted_at.is_(None))
        .label("has_replicas")
    )
    rows = _limited(
        session,
        select(
            Instance.id,
            Instance.project_id,
            Instance.datastore,
            Instance.replica_of_id,
            has_replicas,
            MetricSample.values,
        )
        .join(
            newest,
            and_(
                MetricSample.instance_id == newest.c.instance_id,
                MetricSample.taken == newest.c.taken,
            ),
        )
        .join(Instance, Instance.id == MetricSample.instance_id)
        .where(*_live())
        .order_by(Instance.id, MetricSample.id.desc()),
        "cellar_instance_*",
    )
    found: list[tuple[list[str], str, float]] = []
    seen: set[str] = set()
    for instance_id, project_id, datastore, replica_of_id, primary, values in rows:
        if instance_id in seen or not isinstance(values, dict):
            continue  # two samples taken at the same instant: the one written last wins
        seen.add(instance_id)
        role = "replica" if replica_of_id else "primary" if primary else "standalone"
        found.extend(
            ([instance_id, project_id, datastore, role], name, value)
            for name, value in sorted(values.items())
            if isinstance(name, str) and SAMPLE_NAME.fullmatch(name) and _is_number(value)
        )
    names = {name for _labels, name, _value in found}
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for labels, name, value in found:
        if f"{name}_total" in names:
            continue  # x and x_total would both be cellar_instance_x: the counter is kept
        if name not in families:
            families[name] = _engine_family(name)
        families[name].add_metric(labels, value)
    return list(families.values())


def histogram(
    name: str,
    documentation: str,
    session: Session,
    groups: Sequence[Any],
    value: ColumnElement[Any],
    bounds: Sequence[float],
    where: Sequence[ColumnElement[bool]],
) -> Metric:
    """A histogram of ``value`` over the rows ``where`` picks, counted by the database:
    one row per group, with its count, its sum and how many fall in each bucket."""
    labels = [column.key for column in groups]
    family = HistogramMetricFamily(name, documentation, labels=labels)
    within = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    rows = session.execute(
        select(*groups, func.count(), func.sum(value), *within)
        .where(*where, value.is_not(None))
        .group_by(*groups)
    )
    for row in rows:
        keys, (count, total, *counts) = row[: len(groups)], row[len(groups) :]
        buckets = [(floatToGoString(b), int(n or 0)) for b, n in zip(bounds, counts, strict=True)]
        family.add_metric([str(k) for k in keys], [*buckets, ("+Inf", count)], float(total or 0))
    return family


def _engine_family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    labels = [*PER_INSTANCE, "role"]
    help_text = f"The engine's {name}, from the instance's newest sample."
    if name.endswith("_total"):
        return CounterMetricFamily(f"cellar_instance_{name}", help_text, labels=labels)
    return GaugeMetricFamily(f"cellar_instance_{name}", help_text, labels=labels)


def _limited(session: Session, query: Any, family: str) -> Sequence[Any]:
    rows = session.execute(query.limit(ROW_LIMIT)).all()
    if len(rows) == ROW_LIMIT:
        logger.warning("%s: only the first %d rows are shown", family, ROW_LIMIT)
    return rows


def _live() -> tuple[ColumnElement[bool], ...]:
    return Instance.deleted_at.is_(None), Instance.purpose.is_(None)


def _seconds(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, in the database's own words."""
    if _dialect(session) == "postgresql":
        return extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _age(now: dt.datetime, when: dt.datetime) -> float:
    return max((now - when).total_seconds(), 0.0)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _archives(datastore: str, version_name: str) -> bool:
    found = catalog.DATASTORES.get(datastore)
    version = found.version(version_name) if found is not None else None
    return version is not None and bool(version.archive_format)
