"""What the views of some instances read besides the instances' own rows, with one query
of each kind for a whole page.

:class:`Related` loads configuration names, replica sets and their replicas, recovery
windows and running tasks, keyed by id. The instances are named by their ids (sent in
slices of ``IN_LIST``) or, when they are every instance that some conditions choose (a
page that holds the whole project), by those conditions: each read then joins the
instances and the statement is the same for every project, so it is compiled once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, Select, bindparam, case, func, select
from sqlalchemy.orm import Session

from cellar.models import ArchiveSegment, Backup, Configuration, Instance, ReplicaSet, Task
from cellar.status import BackupStatus, TaskState

IN_LIST = 500  # ids in one IN (...): SQLite builds before 3.32 take 999 parameters at most


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


class Window(NamedTuple):
    """The moments a point-in-time restore of an instance can reach."""

    earliest: dt.datetime
    latest: dt.datetime


TASK_COLUMNS = tuple(getattr(Task, name) for name in TaskRow._fields)
SET_COLUMNS = tuple(getattr(ReplicaSet, name) for name in SetRow._fields)
IDS: BindParameter[Any] = bindparam("ids", expanding=True)
PROJECT: BindParameter[str] = bindparam("project")
# the instances a project's list shows: its own, not deleted, not Cellar's scratch copies
LISTED = (Instance.project_id == PROJECT, Instance.deleted_at.is_(None), Instance.purpose.is_(None))


@dataclasses.dataclass(frozen=True)
class Every:
    """Every instance that the list of a project shows."""

    project_id: str


Ids = Sequence[str] | Every  # the instances meant


def chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), IN_LIST):
        yield unique[start : start + IN_LIST]


class Read:
    """A query of the rows of some instances, by their ids or for all that a project's
    list shows; its statements are built once (building one costs more than running it)."""

    def __init__(self, query: Select[*tuple[Any, ...]], column: Any) -> None:
        self.by_ids = query.where(column.in_(IDS))
        self.listed = query.join(Instance, Instance.id == column).where(*LISTED)

    def rows(self, session: Session, ids: Ids) -> Iterator[Any]:
        if isinstance(ids, Every):
            yield from session.connection().execute(self.listed, {"project": ids.project_id})
        else:
            for chunk in chunks(ids):
                yield from session.connection().execute(self.by_ids, {"ids": chunk})


CONFIGURATION_NAMES = select(Configuration.id, Configuration.name).where(Configuration.id.in_(IDS))
LIVE_SETS = select(*SET_COLUMNS).where(ReplicaSet.id.in_(IDS), ReplicaSet.deleted_at.is_(None))
MEMBERS = (
    select(Instance.replica_set_id, Instance.id)
    .where(Instance.replica_set_id.in_(IDS), Instance.deleted_at.is_(None))
    .order_by(Instance.created, Instance.id)
)
COMPLETED_BACKUPS = Read(
    select(
        Backup.instance_id,
        func.min(case((Backup.type == "full", Backup.finished_at))),
        func.max(Backup.finished_at),
    )
    .where(Backup.status == BackupStatus.COMPLETED.value, Backup.deleted_at.is_(None))
    .group_by(Backup.instance_id),
    Backup.instance_id,
)
LAST_ARCHIVED = Read(
    select(ArchiveSegment.instance_id, func.max(ArchiveSegment.closed_at)).group_by(
        ArchiveSegment.instance_id
    ),
    ArchiveSegment.instance_id,
)
RUNNING_TASKS = Read(
    select(*TASK_COLUMNS)
    .where(Task.state == TaskState.RUNNING.value)
    .order_by(Task.created.desc()),
    Task.instance_id,
)


def _by_ids(session: Session, query: Select[*tuple[Any, ...]], ids: Sequence[str]) -> Iterator[Any]:
    for chunk in chunks(ids):
        yield from session.connection().execute(query, {"ids": chunk})


@dataclasses.dataclass(frozen=True)
class Related:
    """What the views of some instances read besides the instances' own rows."""

    configuration_names: dict[str, str]  # by configuration id
    sets: dict[str, SetRow]  # the live replica sets, by id
    replicas: dict[str, tuple[str, ...]]  # a set's replicas, oldest first, by set id
    windows: dict[str, Window]  # recovery windows, by instance id
    tasks: dict[str, TaskRow]  # the newest running task, by instance id

    @classmethod
    def load(
        cls,
        session: Session,
        instances: Sequence[Any],
        archived: set[str],
        every: Every | None = None,
    ) -> Related:
        """One query of each kind for all of ``instances`` (rows with ``id``,
        ``configuration_id`` and ``replica_set_id``); windows only for the ids in
        ``archived``. ``every``: the project whose listed instances they all are."""
        ids: Ids = [i.id for i in instances] if every is None else every
        configurations = [i.configuration_id for i in instances if i.configuration_id]
        names = {r.id: r.name for r in _by_ids(session, CONFIGURATION_NAMES, configurations)}
        set_ids = [i.replica_set_id for i in instances if i.replica_set_id]
        sets = {r.id: SetRow._make(r) for r in _by_ids(session, LIVE_SETS, set_ids)}
        page = {i.id for i in instances}
        windows = _windows(session, ids if every is not None else sorted(archived))
        return cls(
            configuration_names=names,
            sets=sets,
            replicas=_replicas(session, [s for s in sets.values() if s.primary_id in page]),
            windows={i: w for i, w in windows.items() if i in archived},
            tasks=_running_tasks(session, ids),
        )


def _replicas(session: Session, sets: Sequence[SetRow]) -> dict[str, tuple[str, ...]]:
    """Every live member of ``sets`` but its primary, oldest first, by set id."""
    found: dict[str, list[str]] = {s.id: [] for s in sets}
    primaries = {s.id: s.primary_id for s in sets}
    for set_id, instance_id in _by_ids(session, MEMBERS, list(primaries)):
        if instance_id != primaries[str(set_id)]:
            found[str(set_id)].append(instance_id)
    return {set_id: tuple(members) for set_id, members in found.items()}


def _windows(session: Session, ids: Ids) -> dict[str, Window]:
    """The moments a point-in-time restore of each instance can reach: from its first
    full backup to the last of its backups and archived files (as ``recovery_window``)."""
    backups = {i: (first, last) for i, first, last in COMPLETED_BACKUPS.rows(session, ids) if first}
    archived: dict[str, dt.datetime | None] = {}
    if backups:
        archived = {i: last for i, last in LAST_ARCHIVED.rows(session, ids)}
    windows = {}
    for instance_id, (first, last_backup) in backups.items():
        moments = (first, last_backup, archived.get(instance_id))
        windows[instance_id] = Window(first, max(t for t in moments if t is not None))
    return windows


def _running_tasks(session: Session, ids: Ids) -> dict[str, TaskRow]:
    found: dict[str, TaskRow] = {}
    for task in RUNNING_TASKS.rows(session, ids):
        if task.instance_id is not None:
            found.setdefault(task.instance_id, TaskRow._make(task))
    return found
