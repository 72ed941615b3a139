"""A project of many instances in the metadata database, for ``benchmarks/api.py``.

Use :func:`fill` with ``CELLAR_HOME`` (and ``CELLAR_DATABASE_URL``) set: it makes a
project, a member of it with a token, and instances varied as a real project's are
(three datastores; replica sets of a primary and two replicas, with endpoints;
configuration groups; backups and archived files, so a recovery window; finished and
running tasks; faults), written in bulk. :func:`empty` takes them out again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import secrets
from typing import Any

from sqlalchemy import delete, insert, select, update

from cellar import catalog
from cellar import settings as settings_module
from cellar.db import Database
from cellar.identity import store
from cellar.identity.bootstrap import bootstrap
from cellar.identity.models import Project, Role, RoleAssignment, User, new_key
from cellar.identity.tokens import TokenSealer
from cellar.models import (
    ArchiveSegment,
    Backup,
    Configuration,
    Instance,
    ReplicaSet,
    Task,
    new_id,
    utcnow,
)
from cellar.secrets import SecretBox, load_key
from cellar.status import BackupStatus, InstanceStatus, OperatingStatus, TaskState

GIB = 2**30
SET_SIZE = 3  # a primary and two replicas
# (share of instances, status, running workflow, fault); the rest are ACTIVE and idle
STATES = (
    (0.05, InstanceStatus.BUILD, "provision", None),
    (0.03, InstanceStatus.RESIZE, "resize_flavor", None),
    (0.02, InstanceStatus.BACKUP, "backup", None),
    (0.03, InstanceStatus.ERROR, None, "the engine did not start in 120 s"),
)


@dataclasses.dataclass(frozen=True)
class Filled:
    """What :func:`fill` made: the project, a member's token, and instance ids to show."""

    project_id: str
    token: str
    instance_ids: list[str]


@dataclasses.dataclass
class ProjectRows:
    """The rows of one project, made in memory and then written with one insert a table."""

    project_id: str
    box: SecretBox
    rng: random.Random
    now: dt.datetime
    configurations: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    tables: dict[type, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def add(self, model: type, row: dict[str, Any]) -> None:
        self.tables.setdefault(model, []).append({"project_id": self.project_id, **row})

    def add_configurations(self, per_datastore: int = 5) -> None:
        for name, datastore in catalog.DATASTORES.items():
            ids = self.configurations[name] = [new_id() for _ in range(per_datastore)]
            for n, config_id in enumerate(ids):
                self.add(
                    Configuration,
                    {
                        "id": config_id,
                        "name": f"{name}-tuned-{n}",
                        "datastore": name,
                        "datastore_version": datastore.default_version.name,
                        "values": {"max_connections": 100 + n},
                    },
                )

    def add_group(self, index: int, room: int) -> int:
        """One instance, or a replica set (when ``room`` allows), numbered from ``index``;
        how many instances it made."""
        datastore = self.rng.choices(sorted(catalog.DATASTORES), weights=[3, 5, 2])[0]
        in_set = datastore != "redis" and room >= SET_SIZE and self.rng.random() < 0.15
        set_id = new_id() if in_set else None
        shared = {
            "datastore": datastore,
            "datastore_version": catalog.DATASTORES[datastore].default_version.name,
            "flavor_id": self.rng.choice(sorted(catalog.FLAVORS)),
            "volume_size": self.rng.choice((1, 2, 5, 10, 20, 50)),
            "configuration_id": (
                self.rng.choice(self.configurations[datastore]) if self.rng.random() < 0.2 else None
            ),
            "replica_set_id": set_id,
        }
        members: list[str] = []
        for n in range(SET_SIZE if in_set else 1):
            primary = {"replica_of_id": members[0] if members else None}
            members.append(self.add_instance(index + n, n, {**shared, **primary}))
        if set_id is not None:
            self.add(
                ReplicaSet,
                {
                    "id": set_id,
                    "primary_id": members[0],
                    "datastore": datastore,
                    "secret": self.box.seal({"password": secrets.token_urlsafe(24)}),
                    "rw_port": 30000 + index,
                    "ro_port": 31000 + index,
                },
            )
        return len(members)

    def add_instance(self, index: int, member: int, shared: dict[str, Any]) -> str:
        instance_id = new_id()
        created = self.now - dt.timedelta(days=30) + dt.timedelta(seconds=index * 2000)
        status, busy, fault = self._state()
        healthy = status == InstanceStatus.ACTIVE
        size = int(shared["volume_size"])
        self.add(
            Instance,
            {
                **shared,
                "id": instance_id,
                "name": f"{shared['datastore']}-{index:04d}",
                "status": status.value,
                "operating_status": (
                    OperatingStatus.HEALTHY if healthy else OperatingStatus.UNKNOWN
                ).value,
                "fault": fault,
                "fault_at": created + dt.timedelta(minutes=3) if fault else None,
                "host": "127.0.0.1",
                "port": 20000 + index,
                "agent_port": 40000 + index,
                "volume_used_bytes": self.rng.randrange(1, size * GIB) if healthy else None,
                "volume_total_bytes": size * GIB,
                "replication": self._replication(shared["replica_set_id"], member),
                "created": created,
                "updated": created + dt.timedelta(minutes=5),
            },
        )
        self.add_task(instance_id, "provision", TaskState.COMPLETED, created)
        if busy is not None:
            self.add_task(instance_id, busy, TaskState.RUNNING, self.now)
        version = catalog.DATASTORES[shared["datastore"]].default_version
        if version.archive_format and member == 0 and self.rng.random() < 0.3:
            self.add_backups(instance_id, created, shared)
        return instance_id

    def _state(self) -> tuple[InstanceStatus, str | None, str | None]:
        roll, below = self.rng.random(), 0.0
        for share, status, busy, fault in STATES:
            below += share
            if roll < below:
                return status, busy, fault
        return InstanceStatus.ACTIVE, None, None

    def _replication(self, set_id: str | None, member: int) -> dict[str, Any] | None:
        """What the agent last reported of a set member's replication (0 is the primary)."""
        if set_id is None:
            return None
        if member == 0:
            return {"replicas_connected": SET_SIZE - 1, "position": "0/3000148"}
        return {
            "lag_seconds": 0.2,
            "lag_bytes": 512,
            "source_connected": True,
            "position": "0/3000148",
            "checked_at": self.now.isoformat(),
        }

    def add_task(self, instance_id: str, workflow: str, state: TaskState, at: dt.datetime) -> None:
        done = state != TaskState.RUNNING
        self.add(
            Task,
            {
                "id": new_id(),
                "instance_id": instance_id,
                "workflow": workflow,
                "step": "done" if done else "prepare",
                "state": state.value,
                "params": {},
                "request_id": f"req-{new_id()}",
                "step_number": 5 if done else 3,
                "step_count": 5,
                "description": None if done else "the agent sets the engine up",
                "duration": round(self.rng.uniform(4, 30), 3) if done else None,
                "created": at,
                "updated": at,
                "step_started_at": at,
                "next_run_at": at,
                "finished_at": at + dt.timedelta(seconds=20) if done else None,
            },
        )

    def add_backups(self, instance_id: str, created: dt.datetime, shared: dict[str, Any]) -> None:
        """A full backup and two incrementals on it, and four archived files after them."""
        full = new_id()
        for n, kind in enumerate(("full", "incremental", "incremental")):
            finished = created + dt.timedelta(days=n + 1)
            self.add(
                Backup,
                {
                    "id": full if n == 0 else new_id(),
                    "instance_id": instance_id,
                    "name": f"nightly-{n}",
                    "datastore": shared["datastore"],
                    "datastore_version": shared["datastore_version"],
                    "volume_size": shared["volume_size"],
                    "type": kind,
                    "parent_id": None if n == 0 else full,
                    "status": BackupStatus.COMPLETED.value,
                    "location": f"backups/{instance_id}/{n}",
                    "size_bytes": 2**24,
                    "started_at": finished - dt.timedelta(minutes=2),
                    "finished_at": finished,
                    "created": finished - dt.timedelta(minutes=2),
                },
            )
        for n in range(4):
            self.add(
                ArchiveSegment,
                {
                    "id": new_id(),
                    "instance_id": instance_id,
                    "name": f"{n:024X}",
                    "size_bytes": 2**24,
                    "checksum": secrets.token_hex(32),
                    "closed_at": created + dt.timedelta(days=3, hours=n),
                },
            )


def fill(rows: int, seed: int = 7) -> Filled:
    """Make a project, a member of it with a token, and ``rows`` instances in it, in the
    metadata database of this process's settings."""
    settings = settings_module.load()
    db = Database(settings.database_url)
    db.upgrade()
    bootstrap(settings, db)
    made = ProjectRows(new_key(), SecretBox(load_key(settings.home)), random.Random(seed), utcnow())
    made.add_configurations()
    index = 0
    while index < rows:
        index += made.add_group(index, rows - index)
    with db.session() as session:
        project = Project(id=made.project_id, name=f"bench-{made.project_id[:8]}")
        user = User(name=f"bench-{made.project_id[:8]}-member")
        session.add_all([project, user])
        session.flush()
        member = session.scalars(select(Role.id).where(Role.name == "member")).one()
        session.add(RoleAssignment(user_id=user.id, project_id=project.id, role_id=member))
        for model in (Configuration, Instance, ReplicaSet, Task, Backup, ArchiveSegment):
            if made.tables.get(model):
                session.execute(insert(model), made.tables[model])
        sealer = TokenSealer.from_home(settings.home)
        token, _who = store.issue(session, sealer, user, project, ("password",), settings.token_ttl)
    db.engine.dispose()
    shown = [row["id"] for row in made.tables[Instance]]
    made.rng.shuffle(shown)
    return Filled(made.project_id, token, shown)


class Churn:
    """Changes ``count`` instances of a project before each request, as the health checks
    and running steps do: usage and status, and a running task's step."""

    def __init__(self, instance_ids: list[str], count: int, seed: int = 11) -> None:
        self.db = Database(settings_module.load().database_url)
        self.ids, self.count, self.rng, self.turn = instance_ids, count, random.Random(seed), 0

    def __call__(self) -> None:
        self.turn += 1
        chosen = self.rng.sample(self.ids, self.count)
        with self.db.session() as session:
            for n, instance_id in enumerate(chosen):
                values: dict[str, Any] = {"volume_used_bytes": self.turn * GIB // 100 + n}
                if n == 0:
                    values["operating_status"] = self.rng.choice(["HEALTHY", "ERROR"])
                session.execute(update(Instance).where(Instance.id == instance_id).values(values))
            session.execute(
                update(Task)
                .where(Task.instance_id == chosen[0], Task.state == TaskState.RUNNING.value)
                .values(step=f"step-{self.turn}")
            )

    def close(self) -> None:
        self.db.engine.dispose()


def empty(project_id: str) -> None:
    """Delete what :func:`fill` made, from a database that outlives the run."""
    db = Database(settings_module.load().database_url)
    with db.session() as session:
        users = list(
            session.scalars(
                select(RoleAssignment.user_id).where(RoleAssignment.project_id == project_id)
            )
        )
        for model in (ArchiveSegment, Backup, Task, ReplicaSet, Instance, Configuration):
            session.execute(delete(model).where(model.project_id == project_id))
        session.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project_id))
        session.execute(delete(User).where(User.id.in_(users)))
        session.execute(delete(Project).where(Project.id == project_id))
    db.engine.dispose()
