"""What a step gets to work with: the services, its session, its task and instance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session

from cellar.db import Database
from cellar.models import Instance, Secret, Task, utcnow
from cellar.secrets import SecretBox
from cellar.settings import Settings
from taskmanager.agent_client import AgentClient
from taskmanager.backup_storage import BackupStorage
from taskmanager.drivers.base import ComputeDriver

if TYPE_CHECKING:
    from taskmanager.drivers.endpoints import Backend


class Enqueue(Protocol):
    def __call__(self, task_id: str, countdown: float, request_id: str) -> None: ...


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


@dataclasses.dataclass
class StepContext:
    services: Services
    session: Session
    task: Task
    _lease_renewed: float = dataclasses.field(default_factory=time.monotonic)

    def keep_lease(self) -> None:
        """Push this step's lease forward during long work (call often: it writes rarely).

        It writes through its own session, so the step's session must hold no
        uncommitted writes while it streams (commit them first).
        """
        lease = self.services.settings.step_lease
        if time.monotonic() - self._lease_renewed < lease / 3:
            return
        self._lease_renewed = time.monotonic()
        with self.services.db.session() as session:
            session.execute(
                update(Task)
                .where(Task.id == self.task.id, Task.lease_owner == self.task.lease_owner)
                .values(lease_until=utcnow() + dt.timedelta(seconds=lease), updated=Task.updated)
                .execution_options(synchronize_session=False)
            )

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
