"""Builders for step tests: put the world in a state, run one step, look at what it did.

``run`` runs one labelled step of a task the way the runner does (under the task's
lease, its commits fenced) and returns the step's decision, without applying it: the
task stays at the step, so a test can run it again. A step that raises leaves nothing
of its own transaction behind, as in the runner.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, TypeVar

from cellar.models import Backup, Instance, ReplicaSet, Task, utcnow
from cellar.status import BackupStatus, InstanceStatus, OperatingStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager.context import Services, StepContext
from taskmanager.drivers.base import ContainerSpec
from taskmanager.lease import acquire
from taskmanager.workflow import Decision
from taskmanager.workflows import workflow_of
from taskmanager.workflows.backup import storage_key
from tests.unit.fakes import FakeAgent, FakeCompute, FakeEndpoints, Queue

M = TypeVar("M")

PROJECT = "p1"
VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}


class Agents:
    """One fake agent per instance that a test gave its own; the shared one otherwise."""

    def __init__(self, shared: FakeAgent) -> None:
        self.shared = shared
        self.own: dict[str, FakeAgent] = {}

    def __call__(self, instance: Instance) -> FakeAgent:
        return self.own.get(instance.id, self.shared)


@dataclasses.dataclass
class World:
    services: Services
    compute: FakeCompute
    agent: FakeAgent  # the agent of every instance that has none of its own
    queue: Queue
    agents: Agents

    @classmethod
    def of(cls, services: Services, compute: FakeCompute, agent: FakeAgent, queue: Queue) -> World:
        agents = Agents(agent)
        services = dataclasses.replace(services, agent_for=agents)  # type: ignore[arg-type]
        return cls(services, compute, agent, queue, agents)

    @property
    def endpoints(self) -> FakeEndpoints:
        assert isinstance(self.services.endpoints, FakeEndpoints)
        return self.services.endpoints

    def agent_of(self, instance_id: str) -> FakeAgent:
        """The instance's own agent, made on first use."""
        return self.agents.own.setdefault(instance_id, FakeAgent())


def place_container(world: World, instance: Instance) -> None:
    """The instance's network, volume and running container exist (no calls recorded)."""
    world.compute.networks.add(instance.project_id)
    world.compute.volumes.add(instance.id)
    world.compute.volume_sizes.setdefault(instance.id, instance.volume_size)
    world.compute.containers[instance.id] = ContainerSpec(
        instance_id=instance.id,
        project_id=instance.project_id,
        image=f"cellar/{instance.datastore}:{instance.datastore_version}",
        memory_mb=512,
        vcpus=1.0,
        engine_port=5432,
        agent_port=50051,
        data_path="/var/lib/cellar/data",
        publish_host="127.0.0.1",
    )


def add_instance(
    world: World,
    *,
    datastore: str = "postgresql",
    status: str = InstanceStatus.ACTIVE.value,
    running: bool = True,
    **fields: Any,
) -> str:
    """An instance row (ACTIVE and HEALTHY unless told), its container running if ``running``."""
    values: dict[str, Any] = {
        "project_id": PROJECT,
        "name": "db",
        "flavor_id": "2",
        "datastore": datastore,
        "datastore_version": VERSIONS[datastore],
        "volume_size": 1,
        "status": status,
        "operating_status": (
            OperatingStatus.HEALTHY.value
            if status == InstanceStatus.ACTIVE.value
            else OperatingStatus.UNKNOWN.value
        ),
    }
    values.update(fields)
    if running:
        values.setdefault("host", "127.0.0.1")
        values.setdefault("port", 40000)
        values.setdefault("agent_port", 40001)
    with world.services.db.session() as session:
        instance = Instance(**values)
        session.add(instance)
        session.flush()
        if running:
            place_container(world, instance)
        return instance.id


def add_task(
    world: World,
    workflow: WorkflowName,
    instance_id: str | None,
    params: dict[str, Any] | None = None,
    secret: dict[str, str] | None = None,
) -> str:
    with world.services.db.session() as session:
        task = start_task(
            session,
            world.services.secrets,
            project_id=PROJECT,
            workflow=workflow,
            request_id="req-1",
            instance_id=instance_id,
            params=params,
            secret=secret,
        )
        return task.id


@dataclasses.dataclass(frozen=True)
class SetOf:
    id: str
    primary: str
    replicas: list[str]


def add_set(
    world: World,
    replicas: int = 2,
    *,
    datastore: str = "postgresql",
    mode: str = "async",
    replica_status: str = InstanceStatus.ACTIVE.value,
) -> SetOf:
    """A primary and its replicas, all running, each with its own agent."""
    primary = add_instance(world, datastore=datastore, name="primary")
    ids = [
        add_instance(world, datastore=datastore, name=f"replica-{n}", status=replica_status)
        for n in range(replicas)
    ]
    with world.services.db.session() as session:
        replica_set = ReplicaSet(
            project_id=PROJECT,
            primary_id=primary,
            datastore=datastore,
            mode=mode,
            secret=world.services.secrets.seal({"password": secrets.token_urlsafe(12)}),
        )
        session.add(replica_set)
        session.flush()
        for member in [primary, *ids]:
            row = session.get(Instance, member)
            assert row is not None
            row.replica_set_id = replica_set.id
            row.replica_of_id = None if member == primary else primary
        set_id = replica_set.id
    for member in [primary, *ids]:
        world.agent_of(member)
    return SetOf(set_id, primary, ids)


def stored_backup(
    world: World,
    instance_id: str,
    data: bytes = b"the backup's bytes",
    *,
    status: str = BackupStatus.COMPLETED.value,
    parent_id: str | None = None,
    **fields: Any,
) -> str:
    """A backup of ``instance_id`` whose file holds ``data``, with its size and SHA-256."""
    with world.services.db.session() as session:
        instance = session.get(Instance, instance_id)
        assert instance is not None
        values: dict[str, Any] = {
            "project_id": instance.project_id,
            "instance_id": instance.id,
            "name": "nightly",
            "datastore": instance.datastore,
            "datastore_version": instance.datastore_version,
            "volume_size": instance.volume_size,
            "type": "incremental" if parent_id else "full",
            "parent_id": parent_id,
            "status": status,
            "format": "tar",
            "checkpoint": "lsn-1",
            "started_at": utcnow(),
        }
        backup = Backup(**{**values, **fields})
        session.add(backup)
        session.flush()
        if status == BackupStatus.COMPLETED.value:
            with world.services.storage.writer(storage_key(backup)) as out:
                out.write(data)
            backup.size_bytes, backup.checksum = out.written.size, out.written.checksum
        return backup.id


def run(world: World, task_id: str, label: str, *, last_step: bool | None = None) -> Decision:
    """Run step ``label`` of the task once, as the runner would, and return its decision.

    ``last_step`` is what the runner says (whether ``label`` ends its workflow) unless given.
    """
    services = world.services
    lease = acquire(services.db, task_id, "worker-1", 60.0, 5.0)
    assert lease is not None, f"task {task_id} is not due or is held"
    session = services.db.new_session()
    lease.guard(session)
    try:
        task = session.get(Task, task_id)
        assert task is not None
        flow = workflow_of(task.workflow)
        task.step = label
        ctx = StepContext(services, session, task, lease)
        ctx.last_step = flow.after(label) is None if last_step is None else last_step
        try:
            decision = flow.step(label).run(ctx)
        except BaseException:
            session.rollback()
            raise
        session.commit()
        return decision
    finally:
        session.close()
        lease.release(services.db)


def load(world: World, model: type[M], key: str) -> M:
    with world.services.db.session() as session:
        found = session.get(model, key)
        assert found is not None, f"no {model.__name__} {key}"
        return found


def change(world: World, model: type[Any], key: str, **values: Any) -> None:
    with world.services.db.session() as session:
        row = session.get(model, key)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
