"""Builds the task manager's shared services once per process."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from cellar import settings as settings_module
from cellar.db import Database
from cellar.models import Instance
from cellar.secrets import SecretBox, load_key
from cellar.settings import Settings
from cellar.tasks import Enqueue
from taskmanager import faults
from taskmanager.agent_client import AgentClient
from taskmanager.backup_storage import storage_for
from taskmanager.context import Services
from taskmanager.drivers.docker import DockerDriver
from taskmanager.drivers.endpoints import IMAGE as ENDPOINT_IMAGE
from taskmanager.drivers.endpoints import EndpointDriver
from taskmanager.drivers.volumes import LoopVolumes
from taskmanager.heartbeat import Heartbeat


class AgentPool:
    """One gRPC channel per agent address, reused across steps."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._clients: dict[str, AgentClient] = {}
        self._lock = threading.Lock()

    def __call__(self, instance: Instance) -> AgentClient:
        if instance.agent_port is None:
            raise LookupError(f"instance {instance.id} has no agent port yet")
        address = f"127.0.0.1:{instance.agent_port}"
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = AgentClient("127.0.0.1", instance.agent_port, self.timeout)
                self._clients[address] = client
            return client


def build(settings: Settings, enqueue: Enqueue) -> Services:
    compute = DockerDriver(
        volumes=LoopVolumes(settings.volumes_dir) if settings.volume_backend == "loop" else None
    )
    db = Database(settings.database_url)
    services = Services(
        settings=settings,
        db=db,
        compute=compute,
        agent_for=AgentPool(settings.agent_call_timeout),
        secrets=SecretBox(load_key(settings.home)),
        enqueue=enqueue,
        storage=storage_for(settings),
        endpoints=EndpointDriver(compute, f"{settings.image_prefix}/{ENDPOINT_IMAGE}"),
        heartbeat=Heartbeat(db, settings.step_lease),
    )
    return with_faults(services) if faults.enabled() else services


def with_faults(services: Services) -> Services:
    """The same services, each of their calls a place where a crash test's fault fires."""
    agents: Callable[[Instance], AgentClient] = services.agent_for
    services.compute = faults.wrap(services.compute)
    services.agent_for = lambda instance: faults.wrap(agents(instance))
    services.storage = faults.wrap(services.storage)
    services.endpoints = faults.wrap(services.endpoints)
    return services


@functools.cache
def current() -> Services:
    """This process's services, from the environment's settings."""
    from cellar.queue import enqueue

    return build(settings_module.load(), enqueue)
