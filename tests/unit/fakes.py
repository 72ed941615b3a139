"""Fakes for the task manager's edges: the compute driver, the agents and the queue."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from cellar import settings as settings_module
from cellar.db import Database
from cellar.errors import AgentError, ComputeError
from cellar.models import Instance
from cellar.secrets import SecretBox
from taskmanager.agent_client import BackupEnd, NewUser, Replication, Source, StatusReport
from taskmanager.backup_storage import LocalStorage
from taskmanager.context import Services
from taskmanager.drivers.base import ContainerSpec, Ports
from taskmanager.drivers.endpoints import Backend
from taskmanager.drivers.volumes import OnlineResizeRefused, VolumeBusy
from taskmanager.heartbeat import Heartbeat


class FakeCompute:
    def __init__(self) -> None:
        self.networks: set[str] = set()
        self.volumes: set[str] = set()
        self.containers: dict[str, ContainerSpec] = {}
        self.calls: list[str] = []
        self.ports = Ports(engine=40000, agent=40001)
        self.volume_sizes: dict[str, int] = {}
        self.stopped: set[str] = set()
        self.unmounted: set[str] = set()
        self.online_resize_refused = False
        self.grow_error: ComputeError | None = None
        self.container_error: ComputeError | None = None  # ensure_container raises it
        self.stop_error: ComputeError | None = None  # stop_container raises it
        self.network_error: ComputeError | None = None  # remove_network_if_unused raises it

    def ensure_network(self, project_id: str) -> str:
        self.calls.append("ensure_network")
        self.networks.add(project_id)
        return project_id

    def ensure_volume(self, instance_id: str, project_id: str, size_gb: int) -> str:
        self.calls.append("ensure_volume")
        self.volumes.add(instance_id)
        self.volume_sizes.setdefault(instance_id, size_gb)
        return instance_id

    def ensure_container(self, spec: ContainerSpec) -> Ports:
        self.calls.append("ensure_container")
        if self.container_error is not None:
            raise self.container_error
        self.containers[spec.instance_id] = spec
        return self.ports

    def container_state(self, instance_id: str) -> str | None:
        return "running" if instance_id in self.containers else None

    def published_ports(self, instance_id: str, engine_port: int, agent_port: int) -> Ports | None:
        return self.ports if instance_id in self.containers else None

    def update_limits(self, instance_id: str, memory_mb: int, vcpus: float) -> None:
        self.calls.append(f"update_limits {memory_mb} {vcpus}")

    def start_container(self, instance_id: str) -> bool:
        self.calls.append("start_container")
        self.remount_volume(instance_id)
        self.stopped.discard(instance_id)
        return instance_id in self.containers

    def stop_container(self, instance_id: str) -> bool:
        self.calls.append("stop_container")
        if self.stop_error is not None:
            raise self.stop_error
        self.stopped.add(instance_id)
        return instance_id in self.containers

    def remount_volume(self, instance_id: str) -> bool:
        if instance_id not in self.unmounted:
            return False
        self.calls.append("remount_volume")
        self.unmounted.discard(instance_id)
        return True

    def grow_volume(self, instance_id: str, size_gb: int, offline: bool = False) -> None:
        self.calls.append(f"grow_volume {size_gb}{' offline' if offline else ''}")
        if self.grow_error is not None:
            raise self.grow_error
        if not offline and self.online_resize_refused:
            raise OnlineResizeRefused("resize2fs failed: Permission denied to resize filesystem")
        if offline and instance_id not in self.stopped:
            raise VolumeBusy("the volume is still in use")
        self.volume_sizes[instance_id] = size_gb

    def remove_container(self, instance_id: str) -> bool:
        self.calls.append("remove_container")
        return self.containers.pop(instance_id, None) is not None

    def remove_volume(self, instance_id: str) -> bool:
        self.calls.append("remove_volume")
        found = instance_id in self.volumes
        self.volumes.discard(instance_id)
        return found

    def remove_network_if_unused(self, project_id: str) -> bool:
        self.calls.append("remove_network")
        if self.network_error is not None:
            raise self.network_error
        self.networks.discard(project_id)
        return True


@dataclasses.dataclass
class FakeAgent:
    serving: bool = True
    prepare_status: str = "HEALTHY"
    prepare_error: AgentError | None = None
    prepared: list[tuple[list[str], list[NewUser], int]] = dataclasses.field(default_factory=list)
    databases: list[str] = dataclasses.field(default_factory=list)
    users: dict[str, NewUser] = dataclasses.field(default_factory=dict)
    sessions: dict[str, int] = dataclasses.field(default_factory=dict)  # count_sessions, by user
    resized: list[int] = dataclasses.field(default_factory=list)
    applied: list[dict[str, str]] = dataclasses.field(default_factory=list)
    volume_used_bytes: int = 0
    volume_total_bytes: int = 0
    metrics: dict[str, float] = dataclasses.field(  # what get_metrics reports
        default_factory=lambda: {"connections": 3.0, "uptime_seconds": 60.0}
    )
    root_password: str = ""
    restored_prepares: int = 0
    restore_times: list[str] = dataclasses.field(default_factory=list)
    backup_chunks: list[bytes] = dataclasses.field(default_factory=lambda: [b"page-1", b"page-2"])
    backup_error: AgentError | None = None
    backups: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    restores: list[tuple[str, int, str, bytes]] = dataclasses.field(default_factory=list)
    consistency: tuple[bool, str] = (True, "every table is fine")
    archive: dict[str, tuple[bytes, float]] = dataclasses.field(default_factory=dict)
    rotations: int = 0
    replication_calls: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    replication_error: AgentError | None = None
    promote_errors: list[AgentError] = dataclasses.field(default_factory=list)
    replication_state: Replication = dataclasses.field(
        default_factory=lambda: replication_of("replica", position_value=7, connected=True)
    )
    restart_state: str = "HEALTHY"  # what restart reports
    engine_status: tuple[str, str] | None = None  # what status reports, when set
    backup_end: bool = True  # False: a backup stream stops before its end marker
    promote_writable: bool = True  # False: a promoted replica stays read-only
    failing: dict[str, AgentError] = dataclasses.field(default_factory=dict)  # call -> error
    engine_logs: dict[str, bytes] = dataclasses.field(
        default_factory=lambda: {"postgresql.log": b"LOG:  ready\n"}
    )

    def _maybe_fail(self, call: str) -> None:
        if call in self.failing:
            raise self.failing[call]

    def is_serving(self, timeout: float = 1.0) -> bool:
        return self.serving

    def prepare(
        self,
        databases: list[str],
        users: list[NewUser],
        memory_mb: int,
        timeout: float,
        configuration: dict[str, str] | None = None,
        restored: bool = False,
        restore_time: str = "",
        replica_of: Source | None = None,
    ) -> str:
        if replica_of is not None:
            self.replication_calls.append(("prepare_replica", replica_of))
        self.restore_times.append(restore_time)
        self.applied.append(dict(configuration or {}))
        self.restored_prepares += restored
        if self.prepare_error is not None:
            raise self.prepare_error
        self.prepared.append((list(databases), list(users), memory_mb))
        self.databases.extend(d for d in databases if d not in self.databases)
        self.users.update({u.name: u for u in users})
        return self.prepare_status

    def apply_configuration(self, values: dict[str, str], timeout: float) -> bool:
        self._maybe_fail("apply_configuration")
        self.applied.append(dict(values))
        return "max_connections" in values

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        self._maybe_fail("get_configuration")
        values = {"max_connections": "100", "work_mem": "4096"}
        for applied in self.applied:
            values.update(applied)
        return {name: values[name] for name in names if name in values}

    def restart(self, timeout: float) -> str:
        self._maybe_fail("restart")
        return self.restart_state

    def resize(self, memory_mb: int, timeout: float) -> tuple[str, bool]:
        self._maybe_fail("resize")
        self.resized.append(memory_mb)
        return "HEALTHY", True

    def status(self, timeout: float | None = None) -> tuple[str, str]:
        if self.engine_status is not None:
            return self.engine_status
        return ("FAILED", "initdb failed") if self.prepare_status == "FAILED" else ("HEALTHY", "")

    def backup(
        self, backup_id: str, kind: str, parent_checkpoint: str, timeout: float
    ) -> Iterator[bytes | BackupEnd]:
        self.backups.append((backup_id, kind, parent_checkpoint))
        yield from self.backup_chunks
        if self.backup_error is not None:
            raise self.backup_error
        if not self.backup_end:
            return
        yield BackupEnd(checkpoint=f"lsn-{len(self.backups)}", format="fake")

    def restore(
        self,
        kind: str,
        position: int,
        form: str,
        chunks: Iterator[bytes],
        timeout: float,
        name: str = "",
    ) -> int:
        self._maybe_fail("restore")
        data = b"".join(chunks)
        self.restores.append((kind if not name else f"{kind}:{name}", position, form, data))
        return len(data)

    def check_consistency(self, timeout: float) -> tuple[bool, str]:
        self._maybe_fail("check_consistency")
        return self.consistency

    def list_archive(self, rotate: bool, timeout: float) -> list[tuple[str, int, float]]:
        if rotate:
            self.rotations += 1
        return [(name, len(data), closed) for name, (data, closed) in sorted(self.archive.items())]

    def fetch_archive(self, name: str, timeout: float) -> Iterator[bytes]:
        yield self.archive[name][0]

    def remove_archive(self, names: list[str], timeout: float) -> int:
        gone = [name for name in names if self.archive.pop(name, None) is not None]
        return len(gone)

    def enable_replication(
        self, user: str, password: str, replicas: list[str], synchronous: bool, timeout: float
    ) -> None:
        assert user == "cellar_repl" and password
        self._maybe_fail("enable_replication")
        self.replication_calls.append(("enable", (list(replicas), synchronous)))

    def replication(self, timeout: float | None = None) -> Replication:
        if self.replication_error is not None:
            raise self.replication_error
        return self.replication_state

    def stop_writes(self, timeout: float) -> Replication:
        self._maybe_fail("stop_writes")
        self.replication_calls.append(("stop_writes", None))
        return replication_of("primary", position_value=42)

    def promote(self, wait_for_position: int, wait: float, timeout: float) -> Replication:
        self.replication_calls.append(("promote", wait_for_position))
        if self.promote_errors:
            raise self.promote_errors.pop(0)
        return replication_of(
            "primary", position_value=wait_for_position, writable=self.promote_writable
        )

    def follow(self, source: Source, timeout: float) -> None:
        self._maybe_fail("follow")
        self.replication_calls.append(("follow", source))

    def status_report(self, timeout: float | None = None) -> StatusReport:
        self._maybe_fail("status_report")
        state, detail = self.status(timeout)
        return StatusReport(state, detail, self.volume_used_bytes, self.volume_total_bytes)

    def get_metrics(self, timeout: float = 5.0) -> dict[str, float]:
        self._maybe_fail("get_metrics")
        return dict(self.metrics)

    def create_database(self, name: str, character_set: str = "", collate: str = "") -> bool:
        self._maybe_fail("create_database")
        self.databases.append(name)
        return True

    def list_databases(self) -> list[dict[str, str]]:
        return [{"name": n, "character_set": "", "collate": ""} for n in self.databases]

    def delete_database(self, name: str) -> bool:
        if name not in self.databases:
            return False  # as the engines answer for a database that is gone
        self.databases.remove(name)
        return True

    def create_user(self, user: NewUser) -> bool:
        self._maybe_fail("create_user")
        self.users[user.name] = user
        return True

    def list_users(self) -> list[dict[str, object]]:
        return [
            {"name": u.name, "host": "%", "databases": list(u.databases)}
            for u in self.users.values()
        ]

    def delete_user(self, name: str, host: str = "") -> bool:
        return self.users.pop(name, None) is not None

    def count_sessions(self, name: str, host: str = "") -> int:
        self._maybe_fail("count_sessions")
        return self.sessions.get(name, 0)

    def change_password(self, user: NewUser) -> bool:
        old = self.users.get(user.name)
        if old is None:
            return False
        self.users[user.name] = dataclasses.replace(old, password=user.password)
        return True

    def grant_access(self, name: str, host: str, databases: list[str]) -> None:
        old = self.users[name]
        granted = tuple(sorted({*old.databases, *databases}))
        self.users[name] = dataclasses.replace(old, databases=granted)

    def revoke_access(self, name: str, host: str, database: str) -> bool:
        old = self.users[name]
        if database not in old.databases:
            return False
        kept = tuple(d for d in old.databases if d != database)
        self.users[name] = dataclasses.replace(old, databases=kept)
        return True

    def enable_root(self, password: str) -> str:
        self._maybe_fail("enable_root")
        self.root_password = password
        return "postgres"

    def disable_root(self) -> bool:
        self._maybe_fail("disable_root")
        had, self.root_password = self.root_password != "", ""
        return had

    def list_logs(self) -> list[dict[str, Any]]:
        self._maybe_fail("list_logs")
        return [{"name": name, "size": len(data)} for name, data in self.engine_logs.items()]

    def tail_log(self, name: str, lines: int) -> list[str]:
        return self.engine_logs[name].decode().splitlines()[-lines:]

    def read_log(self, name: str, offset: int, timeout: float) -> Iterator[bytes]:
        self._maybe_fail("read_log")
        data = self.engine_logs[name][offset:]
        for start in range(0, len(data), 5):  # small pieces, as a stream sends them
            yield data[start : start + 5]


class Queue:
    """Records enqueued steps; ``drain`` runs them inline, ignoring countdowns."""

    def __init__(self) -> None:
        self.items: list[tuple[str, float, str]] = []

    def __call__(self, task_id: str, countdown: float, request_id: str) -> None:
        self.items.append((task_id, countdown, request_id))

    def drain(self, services: Services, limit: int = 200) -> int:
        from taskmanager import runner

        ran = 0
        while self.items and ran < limit:
            task_id, _countdown, _rid = self.items.pop(0)
            _expire_naps(services, task_id)
            runner.run_step(services, task_id)
            ran += 1
        return ran


def _expire_naps(services: Services, task_id: str) -> None:
    from cellar.models import Task, utcnow

    with services.db.session() as session:
        task = session.get(Task, task_id)
        if task is not None and task.next_run_at > utcnow():
            task.next_run_at = utcnow()


def replication_of(
    role: str, position_value: int = 0, connected: bool = False, writable: bool = False
) -> Replication:
    return Replication(
        role=role,
        position=str(position_value),
        position_value=position_value,
        source_connected=connected,
        lag_seconds=0.0 if role == "replica" else -1.0,
        lag_bytes=0 if role == "replica" else -1,
        source_host="",
        replicas_connected=0,
        writable=writable,
    )


@dataclasses.dataclass
class FakeEndpoints:
    """Records what the endpoints of each replica set lead to."""

    sets: dict[str, tuple[Backend | None, list[Backend]]] = dataclasses.field(default_factory=dict)
    next_port: int = 46000

    def ensure(
        self,
        set_id: str,
        project_id: str,
        rw: Backend | None,
        ro: Sequence[Backend],
        publish_host: str,
        rw_port: int = 0,
        ro_port: int = 0,
    ) -> tuple[int, int]:
        self.sets[set_id] = (rw, list(ro))
        if not rw_port:
            rw_port, ro_port = self.next_port, self.next_port + 1
            self.next_port += 2
        return rw_port, ro_port

    def remove(self, set_id: str) -> bool:
        return self.sets.pop(set_id, None) is not None


def make_services(
    home: Path, monkeypatch: object
) -> tuple[Services, FakeCompute, FakeAgent, Queue]:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("CELLAR_HOME", str(home))
    monkeypatch.delenv("CELLAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("CELLAR_BROKER_URL", raising=False)
    settings = settings_module.load()
    db = Database(settings.database_url)
    db.upgrade()
    compute, agent, queue = FakeCompute(), FakeAgent(), Queue()

    def agent_for(_instance: Instance) -> FakeAgent:
        return agent

    services = Services(
        settings=settings,
        db=db,
        compute=compute,
        agent_for=agent_for,  # type: ignore[arg-type]
        secrets=SecretBox(Fernet.generate_key()),
        enqueue=queue,
        storage=LocalStorage(settings.backups_dir),
        endpoints=FakeEndpoints(),
        heartbeat=Heartbeat(db, settings.step_lease, worker_id="worker-1"),
    )
    return services, compute, agent, queue


class NetworksApi:
    """The low-level Docker API of a host where every project network already exists."""

    def networks(self, names: Sequence[str]) -> list[dict[str, str]]:
        return [{"Name": n, "Id": f"id-{n}", "Created": "2026-01-01T00:00:00Z"} for n in names]
