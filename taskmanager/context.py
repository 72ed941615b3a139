"""What a step gets to work with: the services, its session, its task and instance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session

from cellar.db import Database
from cellar.models import Instance, Secret, Task
from cellar.secrets import SecretBox
from cellar.settings import Settings
from cellar.tasks import Enqueue
from taskmanager.agent_client import AgentClient
from taskmanager.backup_storage import BackupStorage
from taskmanager.drivers.base import ComputeDriver
from taskmanager.drivers.firewall import Firewall
from taskmanager.faults import Armed
from taskmanager.heartbeat import Heartbeat
from taskmanager.lease import Lease, LeaseLost

if TYPE_CHECKING:
    from taskmanager.drivers.endpoints import Backend


class Endpoints(Protocol):
    """A replica set's fixed rw and ro addresses (an HAProxy container per set)."""

    def ensure(
        self,
        set_id: str,
        project_id: str,
        rw: Backend | None,
        ro: Sequence[Backend],
        publish_host: str,
        rw_port: int = 0,
        ro_port: int = 0,
    ) -> tuple[int, int]: ...

    def remove(self, set_id: str) -> bool: ...


@dataclasses.dataclass
class Services:
    """Everything a worker shares between steps; fakes go in here in unit tests."""

    settings: Settings
    db: Database
    compute: ComputeDriver
    agent_for: Callable[[Instance], AgentClient]
    secrets: SecretBox
    enqueue: Enqueue
    storage: BackupStorage
    endpoints: Endpoints
    heartbeat: Heartbeat
    firewall: Firewall = dataclasses.field(default_factory=Firewall.off)  # access rules


@dataclasses.dataclass
class StepContext:
    """One attempt at one step: its session (every commit of it is fenced by ``lease``)."""

    services: Services
    session: Session
    task: Task
    lease: Lease
    fault: Armed | None = None  # a crash test's fault armed for this step
    started: list[Task] = dataclasses.field(default_factory=list)  # queued after the commit
    last_step: bool = False  # the workflow's last step: an instance turns ACTIVE only here

    def keep_lease(self) -> None:
        """Call often during long work (each chunk of a stream): the worker's heartbeat
        keeps the lease, and this stops the work once the lease was lost."""
        if self.lease.lost:
            raise LeaseLost(f"task {self.task.id}: attempt {self.lease.attempt} lost its lease")
        if self.fault is not None:
            self.fault.point()

    def fence(self) -> None:
        """Make sure the lease still holds and lock the task row until the step's commit:
        for work that must not be done twice, such as publishing a finished backup."""
        self.lease.fence(self.session)

    @property
    def attempt_tag(self) -> str:
        """A name part unique to this attempt, for its scratch files."""
        return f"{self.lease.attempt}-{self.lease.owner.rsplit(':', 1)[-1]}"

    @property
    def instance(self) -> Instance:
        if self.task.instance_id is None:
            raise LookupError(f"task {self.task.id} has no instance")
        instance = self.session.get(Instance, self.task.instance_id)
        if instance is None:
            raise LookupError(f"instance {self.task.instance_id} is gone")
        return instance

    @property
    def agent(self) -> AgentClient:
        return self.services.agent_for(self.instance)

    def secret(self) -> dict[str, str]:
        """The task's decrypted secrets ({} when it has none)."""
        row = self.session.get(Secret, self.task.id)
        return self.services.secrets.open(row.ciphertext) if row else {}

    def forget_secret(self) -> None:
        row = self.session.get(Secret, self.task.id)
        if row is not None:
            self.session.delete(row)
