"""Project quotas as Trove counts them: instances, volumes (GB), backups and RAM (MB).

A project's limit for a resource is its own ``project_quotas`` row, or else the
settings' default; -1 means no limit. What a project uses is counted from the rows
themselves, never kept as a tally that could drift:

- an instance counts from the request that creates it until the request that deletes
  it (the moment its delete task starts), with its volume's size and its flavor's RAM;
  while a resize runs, the larger of the old and new size counts;
- a backup counts until the request that deletes it; a FAILED one holds nothing.

Call :func:`reserve` in the transaction that creates the resources, right after
``claim``: it locks the project's ``quota_locks`` row until that transaction ends,
counts, and raises ``OverLimit`` when the new resources do not fit. Two creates of
one project therefore count one after the other, the second seeing the first's rows,
and concurrent creates can never pass a limit together.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Mapping

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cellar import catalog
from cellar.errors import OverLimit
from cellar.models import Backup, Instance, ProjectQuota, QuotaLock, Task, utcnow
from cellar.settings import Settings
from cellar.status import BackupStatus, TaskState
from cellar.workflows import WorkflowName

logger = logging.getLogger(__name__)

UNLIMITED = -1
MAX_LIMIT = 2**31 - 1  # what the hard_limit column holds


@enum.unique
class Resource(enum.StrEnum):
    INSTANCES = "instances"
    BACKUPS = "backups"
    VOLUMES = "volumes"  # GB
    RAM = "ram"  # MB


UNITS = {Resource.VOLUMES: " GB", Resource.RAM: " MB"}

Amounts = Mapping[Resource, int]


@dataclasses.dataclass(frozen=True)
class Quota:
    """One resource of a project: its limit and what is in use of it."""

    resource: Resource
    limit: int
    in_use: int

    def fits(self, asked: int) -> bool:
        return asked <= 0 or self.limit < 0 or self.in_use + asked <= self.limit


def defaults(settings: Settings) -> dict[Resource, int]:
    """The limits of a project that has none of its own."""
    return {
        Resource.INSTANCES: settings.quota_instances,
        Resource.BACKUPS: settings.quota_backups,
        Resource.VOLUMES: settings.quota_volumes,
        Resource.RAM: settings.quota_ram,
    }


def limits(session: Session, settings: Settings, project_id: str) -> dict[Resource, int]:
    """The project's limits: its own rows over the defaults."""
    found = defaults(settings)
    known = {r.value for r in Resource}
    rows = session.execute(
        select(ProjectQuota.resource, ProjectQuota.hard_limit).where(
            ProjectQuota.project_id == project_id
        )
    ).all()
    for resource, hard_limit in rows:
        if resource in known:
            found[Resource(resource)] = hard_limit
    return found


def in_use(session: Session, project_id: str) -> dict[Resource, int]:
    """What the project uses of each resource now (read as columns, never from the
    session's identity map, so a count after :func:`lock` sees what others committed)."""
    being_deleted = exists().where(
        Task.instance_id == Instance.id,
        Task.state == TaskState.RUNNING.value,
        Task.workflow == WorkflowName.DELETE.value,
    )
    instances = session.execute(
        select(Instance.id, Instance.flavor_id, Instance.volume_size).where(
            Instance.project_id == project_id,
            Instance.deleted_at.is_(None),
            Instance.purpose.is_(None),  # backup checks' scratch instances are Cellar's own
            ~being_deleted,
        )
    ).all()
    resizing = _resizes(session, project_id)
    ram = volumes = 0
    for instance_id, flavor_id, volume_size in instances:
        target = resizing.get(instance_id, {})
        ram += max(ram_mb(flavor_id), ram_mb(target.get("flavor_id")))
        volumes += max(volume_size, _size(target.get("size")))
    backups = session.scalar(
        select(func.count())
        .select_from(Backup)
        .where(
            Backup.project_id == project_id,
            Backup.deleted_at.is_(None),
            Backup.status != BackupStatus.FAILED.value,
        )
    )
    return {
        Resource.INSTANCES: len(instances),
        Resource.BACKUPS: int(backups or 0),
        Resource.VOLUMES: volumes,
        Resource.RAM: ram,
    }


def project_quotas(session: Session, settings: Settings, project_id: str) -> list[Quota]:
    """Every resource's limit and use, in Trove's order."""
    limit, used = limits(session, settings, project_id), in_use(session, project_id)
    return [Quota(r, limit[r], used[r]) for r in Resource]


def for_instances(count: int, flavor: catalog.Flavor, volume_gb: int) -> dict[Resource, int]:
    """What ``count`` new instances of ``flavor`` with ``volume_gb`` volumes take."""
    return {
        Resource.INSTANCES: count,
        Resource.VOLUMES: count * volume_gb,
        Resource.RAM: count * flavor.ram_mb,
    }


def lock(session: Session, project_id: str) -> None:
    """Lock the project's quota row until ``session``'s transaction ends (made if missing).

    PostgreSQL locks the row with ``SELECT ... FOR UPDATE``; SQLite has one writer at a
    time, so the write to the row is the lock."""
    now = utcnow()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(QuotaLock)
            .values(project_id=project_id, touched_at=now)
            .on_conflict_do_nothing(index_elements=["project_id"])
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(QuotaLock)
            .values(project_id=project_id, touched_at=now)
            .on_conflict_do_nothing(index_elements=["project_id"])
        )
    elif session.get(QuotaLock, project_id) is None:  # pragma: no cover - other databases
        session.add(QuotaLock(project_id=project_id, touched_at=now))
        session.flush()
    session.execute(
        select(QuotaLock.project_id).where(QuotaLock.project_id == project_id).with_for_update()
    )
    session.execute(
        update(QuotaLock)
        .where(QuotaLock.project_id == project_id)
        .values(touched_at=now)
        .execution_options(synchronize_session=False)
    )


def reserve(session: Session, settings: Settings, project_id: str, asked: Amounts) -> None:
    """Lock the project's quotas and refuse (``OverLimit``, 413) what does not fit.

    The caller's transaction then adds the rows that make the new usage, and commits
    (or rolls back) with the lock still held."""
    lock(session, project_id)
    refused = [
        quota
        for quota in project_quotas(session, settings, project_id)
        if not quota.fits(asked.get(quota.resource, 0))
    ]
    if refused:
        message = "; ".join(_exceeded(q, asked[q.resource]) for q in refused)
        logger.info("project %s refused: %s", project_id, message)
        raise OverLimit(message)


def _exceeded(quota: Quota, asked: int) -> str:
    unit = UNITS.get(quota.resource, "")
    return (
        f"Quota exceeded for {quota.resource}: limit {quota.limit}{unit}, "
        f"in use {quota.in_use}{unit}, asked {asked}{unit}"
    )


def _resizes(session: Session, project_id: str) -> dict[str, dict[str, object]]:
    """The targets of the project's running resizes, by instance id."""
    rows = session.execute(
        select(Task.instance_id, Task.params).where(
            and_(
                Task.project_id == project_id,
                Task.state == TaskState.RUNNING.value,
                Task.workflow.in_(
                    (WorkflowName.RESIZE_FLAVOR.value, WorkflowName.RESIZE_VOLUME.value)
                ),
            )
        )
    ).all()
    found: dict[str, dict[str, object]] = {}
    for instance_id, params in rows:
        if instance_id is not None:
            found.setdefault(instance_id, {}).update(params or {})
    return found


def ram_mb(flavor_id: object) -> int:
    """The RAM of a flavor by its id; 0 for none or an unknown one."""
    flavor = catalog.FLAVORS.get(str(flavor_id)) if flavor_id is not None else None
    return flavor.ram_mb if flavor else 0


def _size(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
