"""Fakes for the task manager's edges: the compute driver, the agents and the queue."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography.fernet import Fernet

from cellar import settings as settings_module
from cellar.db import Database
from cellar.errors import AgentError
from cellar.models import Instance
from cellar.secrets import SecretBox
from taskmanager.agent_client import NewUser
from taskmanager.context import Services
from taskmanager.drivers.base import ContainerSpec, Ports


class FakeCompute:
    def __init__(self) -> None:
        self.networks: set[str] = set()
        self.volumes: set[str] = set()
        self.containers: dict[str, ContainerSpec] = {}
        self.calls: list[str] = []
        self.ports = Ports(engine=40000, agent=40001)

    def ensure_network(self, project_id: str) -> str:
        self.calls.append("ensure_network")
        self.networks.add(project_id)
        return project_id

    def ensure_volume(self, instance_id: str, project_id: str, size_gb: int) -> str:
        self.calls.append("ensure_volume")
        self.volumes.add(instance_id)
        return instance_id

    def ensure_container(self, spec: ContainerSpec) -> Ports:
        self.calls.append("ensure_container")
        self.containers[spec.instance_id] = spec
        return self.ports

    def container_state(self, instance_id: str) -> str | None:
        return "running" if instance_id in self.containers else None

    def published_ports(self, instance_id: str, engine_port: int, agent_port: int) -> Ports | None:
        return self.ports if instance_id in self.containers else None

    def update_limits(self, instance_id: str, memory_mb: int, vcpus: float) -> None:
        self.calls.append(f"update_limits {memory_mb} {vcpus}")

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
    resized: list[int] = dataclasses.field(default_factory=list)
    applied: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def is_serving(self, timeout: float = 1.0) -> bool:
        return self.serving

    def prepare(
        self,
        databases: list[str],
        users: list[NewUser],
        memory_mb: int,
        timeout: float,
        configuration: dict[str, str] | None = None,
    ) -> str:
        self.applied.append(dict(configuration or {}))
        if self.prepare_error is not None:
            raise self.prepare_error
        self.prepared.append((list(databases), list(users), memory_mb))
        return self.prepare_status

    def apply_configuration(self, values: dict[str, str], timeout: float) -> bool:
        self.applied.append(dict(values))
        return "max_connections" in values

    def resize(self, memory_mb: int, timeout: float) -> tuple[str, bool]:
        self.resized.append(memory_mb)
        return "HEALTHY", True

    def status(self, timeout: float | None = None) -> tuple[str, str]:
        return ("FAILED", "initdb failed") if self.prepare_status == "FAILED" else ("HEALTHY", "")

    def create_database(self, name: str, character_set: str = "", collate: str = "") -> bool:
        self.databases.append(name)
        return True

    def list_databases(self) -> list[dict[str, str]]:
        return [{"name": n, "character_set": "", "collate": ""} for n in self.databases]

    def delete_database(self, name: str) -> bool:
        self.databases.remove(name)
        return True

    def create_user(self, user: NewUser) -> bool:
        self.users[user.name] = user
        return True

    def list_users(self) -> list[dict[str, object]]:
        return [
            {"name": u.name, "host": "%", "databases": list(u.databases)}
            for u in self.users.values()
        ]

    def delete_user(self, name: str, host: str = "") -> bool:
        return self.users.pop(name, None) is not None


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
    )
    return services, compute, agent, queue
