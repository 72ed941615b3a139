"""How instances and tasks look on the wire.

A page of instances is shown with a few queries in all, not a few for each instance:
:class:`Related` loads what their views read besides their own rows (configuration
names, replica sets and their replicas, recovery windows, running tasks) with one query
of each kind, keyed by id. ``instance_view`` is the same for one instance. The views
read plain tuples of the columns they show (:class:`InstanceRow`, :class:`TaskRow`,
:class:`SetRow`), not ORM objects: a page of a thousand is read several times faster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from flask import request
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from cellar import catalog
from cellar.models import ArchiveSegment, Backup, Configuration, Instance, ReplicaSet, Task
from cellar.status import BackupStatus, InstanceStatus, TaskState

GB = 1024**3
IN_LIST = 500  # ids in one IN (...): SQLite builds before 3.32 take 999 parameters at most


class InstanceRow(NamedTuple):
    """The columns of an instance that its view reads."""

    id: str
    project_id: str
    name: str
    status: str
    operating_status: str
    flavor_id: str
    datastore: str
    datastore_version: str
    volume_size: int
    volume_used_bytes: int | None
    created: dt.datetime
    updated: dt.datetime
    host: str | None
    port: int | None
    fault: str | None
    fault_at: dt.datetime | None
    configuration_id: str | None
    replica_set_id: str | None
    replication: dict[str, Any] | None


class TaskRow(NamedTuple):
    """The columns of a task that its view reads."""

    id: str
    instance_id: str | None
    workflow: str
    state: str
    step: str
    created: dt.datetime
    updated: dt.datetime
    request_id: str
    step_number: int
    step_count: int | None
    description: str | None
    error: str | None
    duration: float | None


class SetRow(NamedTuple):
    """The columns of a replica set that its members' views read."""

    id: str
    primary_id: str
    mode: str
    auto_failover: bool
    rw_port: int | None
    ro_port: int | None


INSTANCE_COLUMNS = tuple(getattr(Instance, name) for name in InstanceRow._fields)
TASK_COLUMNS = tuple(getattr(Task, name) for name in TaskRow._fields)
SET_COLUMNS = tuple(getattr(ReplicaSet, name) for name in SetRow._fields)


def row_of(instance: Instance) -> InstanceRow:
    return InstanceRow._make(getattr(instance, name) for name in InstanceRow._fields)


def timestamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def links(path: str) -> list[dict[str, str]]:
    return _links(request.host_url.rstrip("/") + path)


def _links(href: str) -> list[dict[str, str]]:
    return [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]


def task_view(task: Task | TaskRow) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": task.id,
        "workflow": task.workflow,
        "state": task.state,
        "step": task.step,
        "created": timestamp(task.created),
        "updated": timestamp(task.updated),
        "request_id": task.request_id,
    }
    if task.step_count:
        view["step_number"] = task.step_number
        view["steps"] = task.step_count
        view["description"] = task.description
    elif task.state == TaskState.RUNNING.value:
        view["description"] = "waiting for a worker to begin it"
    if task.error:
        view["error"] = task.error
    if task.duration is not None:
        view["duration"] = round(task.duration, 3)
    return view


def running_task(session: Session, instance_id: str) -> Task | None:
    return session.scalars(
        select(Task)
        .where(Task.instance_id == instance_id, Task.state == TaskState.RUNNING.value)
        .order_by(Task.created.desc())
    ).first()


def volume_view(instance: Instance | InstanceRow) -> dict[str, Any]:
    """Trove's volume: its size, and the GB in use once the agent has reported it."""
    view: dict[str, Any] = {"size": instance.volume_size}
    if instance.volume_used_bytes is not None:
        view["used"] = round(instance.volume_used_bytes / GB, 2)
    return view


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), IN_LIST):
        yield unique[start : start + IN_LIST]


def _has_archive(instance: InstanceRow) -> bool:
    return _archives(instance.datastore, instance.datastore_version)


@functools.cache  # the catalog is fixed; looking a version up makes its uuid5 id each time
def _archives(datastore: str, version_name: str) -> bool:
    version = catalog.DATASTORES[datastore].version(version_name)
    return version is not None and bool(version.archive_format)


@dataclasses.dataclass(frozen=True)
class Related:
    """What the views of some instances read besides the instances' own rows."""

    configuration_names: dict[str, str]  # by configuration id
    sets: dict[str, SetRow]  # the live replica sets, by id
    replicas: dict[str, list[str]]  # a set's replicas, oldest first, by set id
    windows: dict[str, dict[str, dt.datetime]]  # recovery windows, by instance id
    tasks: dict[str, TaskRow]  # the newest running task, by instance id

    @classmethod
    def load(cls, session: Session, instances: Sequence[InstanceRow]) -> Related:
        """One query of each kind for all of ``instances`` (one per ``IN_LIST`` ids)."""
        ids = [i.id for i in instances]
        names: dict[str, str] = {}
        for chunk in _chunks([i.configuration_id for i in instances if i.configuration_id]):
            query = select(Configuration.id, Configuration.name).where(Configuration.id.in_(chunk))
            names.update({row.id: row.name for row in session.connection().execute(query)})
        sets: dict[str, SetRow] = {}
        for chunk in _chunks([i.replica_set_id for i in instances if i.replica_set_id]):
            found = session.connection().execute(
                select(*SET_COLUMNS).where(
                    ReplicaSet.id.in_(chunk), ReplicaSet.deleted_at.is_(None)
                )
            )
            sets.update({row.id: SetRow._make(row) for row in found})
        page = set(ids)
        return cls(
            configuration_names=names,
            sets=sets,
            replicas=_replicas(session, [s for s in sets.values() if s.primary_id in page]),
            windows=_windows(session, [i.id for i in instances if _has_archive(i)]),
            tasks=_running_tasks(session, ids),
        )


def _replicas(session: Session, sets: Sequence[SetRow]) -> dict[str, list[str]]:
    """Every live member of ``sets`` but its primary, oldest first, by set id."""
    found: dict[str, list[str]] = {s.id: [] for s in sets}
    primaries = {s.id: s.primary_id for s in sets}
    for chunk in _chunks(list(primaries)):
        rows = session.connection().execute(
            select(Instance.replica_set_id, Instance.id)
            .where(Instance.replica_set_id.in_(chunk), Instance.deleted_at.is_(None))
            .order_by(Instance.created, Instance.id)
        )
        for set_id, instance_id in rows:
            if instance_id != primaries[str(set_id)]:
                found[str(set_id)].append(instance_id)
    return found


def _windows(session: Session, ids: Sequence[str]) -> dict[str, dict[str, dt.datetime]]:
    """The moments a point-in-time restore of each instance can reach: from its first
    full backup to the last of its backups and archived files (as ``recovery_window``)."""
    backups: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}
    for chunk in _chunks(ids):
        rows = session.connection().execute(
            select(
                Backup.instance_id,
                func.min(case((Backup.type == "full", Backup.finished_at))),
                func.max(Backup.finished_at),
            )
            .where(
                Backup.instance_id.in_(chunk),
                Backup.status == BackupStatus.COMPLETED.value,
                Backup.deleted_at.is_(None),
            )
            .group_by(Backup.instance_id)
        )
        backups.update({i: (first, last) for i, first, last in rows if first is not None})
    archived: dict[str, dt.datetime | None] = {}
    for chunk in _chunks(list(backups)):
        rows = session.connection().execute(
            select(ArchiveSegment.instance_id, func.max(ArchiveSegment.closed_at))
            .where(ArchiveSegment.instance_id.in_(chunk))
            .group_by(ArchiveSegment.instance_id)
        )
        archived.update({i: last for i, last in rows})
    windows = {}
    for instance_id, (first, last_backup) in backups.items():
        moments = (first, last_backup, archived.get(instance_id))
        windows[instance_id] = {
            "earliest": first,
            "latest": max(t for t in moments if t is not None),
        }
    return windows


def _running_tasks(session: Session, ids: Sequence[str]) -> dict[str, TaskRow]:
    found: dict[str, TaskRow] = {}
    for chunk in _chunks(ids):
        tasks = session.connection().execute(
            select(*TASK_COLUMNS)
            .where(Task.instance_id.in_(chunk), Task.state == TaskState.RUNNING.value)
            .order_by(Task.created.desc())
        )
        for task in tasks:
            if task.instance_id is not None:
                found.setdefault(task.instance_id, TaskRow._make(task))
    return found


def replication_view(instance: InstanceRow, related: Related, root: str) -> dict[str, Any]:
    """Trove's ``replica_of`` and ``replicas``, and Cellar's ``replication`` and ``endpoints``."""
    replica_set = related.sets.get(instance.replica_set_id or "")
    if replica_set is None:
        return {}
    path = f"{root}/v1.0/{instance.project_id}/instances/"
    result: dict[str, Any] = {}
    is_primary = replica_set.primary_id == instance.id
    state = dict(instance.replication or {})
    result["replication"] = {
        "role": "primary" if is_primary else "replica",
        "mode": replica_set.mode,
        "auto_failover": replica_set.auto_failover,
        **{k: state[k] for k in ("lag_seconds", "lag_bytes", "source_connected", "position",
                                 "replicas_connected", "checked_at") if k in state},
    }  # fmt: skip
    if is_primary:
        result["replicas"] = [
            {"id": r, "links": _links(path + r)} for r in related.replicas.get(replica_set.id, [])
        ]
    else:
        result["replica_of"] = {
            "id": replica_set.primary_id,
            "links": _links(path + replica_set.primary_id),
        }
    if replica_set.rw_port:
        host = instance.host
        result["endpoints"] = {
            "rw": {"host": host, "port": replica_set.rw_port},
            "ro": {"host": host, "port": replica_set.ro_port},
        }
    return result


def instance_views(
    session: Session, instances: Sequence[Instance | InstanceRow]
) -> list[dict[str, Any]]:
    """The views of ``instances``, in their order, with a few queries in all."""
    rows = [i if isinstance(i, InstanceRow) else row_of(i) for i in instances]
    related = Related.load(session, rows)
    root = request.host_url.rstrip("/")
    return [_view(row, related, root) for row in rows]


def instance_view(session: Session, instance: Instance) -> dict[str, Any]:
    return instance_views(session, [instance])[0]


def _view(instance: InstanceRow, related: Related, root: str) -> dict[str, Any]:
    """The view of one instance; ``root`` is the API's URL, as ``links`` makes them."""
    project = f"{root}/v1.0/{instance.project_id}"
    view: dict[str, Any] = {
        "id": instance.id,
        "name": instance.name,
        "status": instance.status,
        "operating_status": instance.operating_status,
        "flavor": {
            "id": instance.flavor_id,
            "links": _links(f"{project}/flavors/{instance.flavor_id}"),
        },
        "datastore": {"type": instance.datastore, "version": instance.datastore_version},
        "volume": volume_view(instance),
        "created": timestamp(instance.created),
        "updated": timestamp(instance.updated),
        "links": _links(f"{project}/instances/{instance.id}"),
        "connection": None,
    }
    if instance.status == InstanceStatus.ACTIVE.value and instance.port:
        view["connection"] = {"host": instance.host, "port": instance.port}
        view["ip"] = [instance.host]
    if instance.fault:
        view["fault"] = {
            "message": instance.fault,
            "created": timestamp(instance.fault_at),
            "details": instance.fault,
        }
    if instance.configuration_id:
        view["configuration"] = {
            "id": instance.configuration_id,
            "name": related.configuration_names.get(instance.configuration_id),
            "links": _links(f"{project}/configurations/{instance.configuration_id}"),
        }
    view.update(replication_view(instance, related, root))
    window = related.windows.get(instance.id)
    if window is not None:
        view["recovery_window"] = {k: f"{timestamp(v)}Z" for k, v in window.items()}
    task = related.tasks.get(instance.id)
    if task is not None:
        view["task"] = task_view(task)
    return view
