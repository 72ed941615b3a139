"""Builds the task manager's shared services once per process."""

from __future__ import annotations

import functools
from collections.abc import Callable

from cellar import settings as settings_module
from cellar.agent_reads import Pool
from cellar.db import Database
from cellar.models import Instance
from cellar.pki import ClientTls
from cellar.secrets import SecretBox
from cellar.settings import Settings
from cellar.tasks import Enqueue
from taskmanager import faults
from taskmanager.agent_client import AgentClient
from taskmanager.backup_crypto import DataKeys, EncryptedStorage
from taskmanager.backup_storage import storage_for
from taskmanager.context import Services
from taskmanager.drivers.docker import DockerDriver
from taskmanager.drivers.endpoints import IMAGE as ENDPOINT_IMAGE
from taskmanager.drivers.endpoints import EndpointDriver
from taskmanager.drivers.firewall import Firewall
from taskmanager.drivers.volumes import LoopVolumes
from taskmanager.heartbeat import Heartbeat

PROGRAMS = ((4, "iptables"), (6, "ip6tables"))


def firewall_for(settings: Settings) -> Firewall:
    """The host's iptables (and ip6tables, if installed), or a firewall that does nothing
    (``CELLAR_FIREWALL=off``, or not root on the Docker host)."""
    if not settings.firewall:
        return Firewall.off()
    found = {family: settings_module.find_tool(name) for family, name in PROGRAMS}
    programs = {family: path for family, path in found.items() if path}
    return Firewall(programs=programs, lock_path=settings.home / "firewall.lock")


def build(settings: Settings, enqueue: Enqueue) -> Services:
    firewall = firewall_for(settings)
    compute = DockerDriver(
        volumes=LoopVolumes(settings.volumes_dir) if settings.volume_backend == "loop" else None,
        firewall=firewall,
    )
    db = Database(settings.database_url)
    tls = ClientTls.from_home(settings.home)
    box = SecretBox.from_home(settings.home)
    storage = EncryptedStorage(storage_for(settings), DataKeys(db, box), settings.backup_encryption)
    services = Services(
        settings=settings,
        db=db,
        compute=compute,
        agent_for=Pool(AgentClient, tls, settings.agent_call_timeout),
        secrets=box,
        enqueue=enqueue,
        storage=storage,
        endpoints=EndpointDriver(compute, f"{settings.image_prefix}/{ENDPOINT_IMAGE}"),
        heartbeat=Heartbeat(db, settings.step_lease),
        firewall=firewall,
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
