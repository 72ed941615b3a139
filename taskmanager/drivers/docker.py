"""The Docker compute driver: one container, two volumes per instance, one network per project.

Every resource is named after its owner's id and looked up before it is made, so
a step that runs twice finds its own earlier work. Errors of the Docker SDK are
translated into ``ComputeError`` here and nowhere else. With ``volumes`` (the
loop backend) each instance's data is a size-enforced loop-mounted file system
bound into the container; without, a plain Docker volume whose size is not enforced.
The container's root file system is read-only: besides the data, an instance writes
only to its spool volume (the archive the engine keeps beside its data: PostgreSQL's
WAL, MariaDB's binary log) and to small in-memory folders for sockets and scratch.
With a ``firewall``, a container's access rules are put in place before it first starts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import socket
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests

from cellar.errors import ComputeError
from taskmanager.drivers.base import ContainerSpec, Ports
from taskmanager.drivers.firewall import BRIDGE_PREFIX, Allowed, Firewall
from taskmanager.drivers.volumes import LoopVolumes, VolumeNotResizable

logger = logging.getLogger(__name__)
TLS_PATH = "/etc/cellar/tls"  # where an agent reads its certificate (guestagent --tls-dir)
PIDS_LIMIT = 512  # processes and threads of one instance: an engine's, the agent's, tools'
# What an instance's root (the agent) may still do: start the engine's programs as the
# engine's user (setpriv), own, read and fix the engine's files, and signal its processes.
# Everything else Docker grants by default is dropped, and no program may gain more.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL")
HARDENING: dict[str, Any] = {
    "cap_drop": ["ALL"],
    "cap_add": list(CAPABILITIES),
    "security_opt": ["no-new-privileges:true"],
    "pids_limit": PIDS_LIMIT,
    "read_only": True,
    # sockets, the agent's copy of its TLS files, and tools' scratch; never programs
    "tmpfs": {
        "/run": "rw,nosuid,nodev,noexec,size=16m,mode=0755",
        "/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777",  # noqa: S108 (inside the container)
    },
}

T = TypeVar("T")
LABEL = "cellar.instance"


class ImageMissing(ComputeError):
    """The engine image is not built on this Docker host."""


CPU_PERIOD = 100_000  # microseconds; a flavor's vCPUs are a quota of this period
STOP_TIMEOUT = 30  # seconds the engine gets to shut down cleanly


def cpu_quota(vcpus: float) -> int:
    return int(vcpus * CPU_PERIOD)


def free_port(host: str) -> int:
    """A port that nothing listens on at ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def host_port(container: Any, port: int) -> int:
    """The host port a (reloaded) container publishes its TCP ``port`` on."""
    ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
    bindings = ports.get(f"{port}/tcp") or []
    if not bindings:
        raise ComputeError(f"container {container.name} publishes no port for {port}")
    return int(bindings[0]["HostPort"])


def container_name(instance_id: str) -> str:
    return f"cellar-{instance_id}"


def volume_name(instance_id: str) -> str:
    return f"cellar-data-{instance_id}"


def spool_name(instance_id: str) -> str:
    return f"cellar-spool-{instance_id}"


def created(stamp: str) -> str:
    """Docker's RFC 3339 time with its fraction padded, so that strings sort as times."""
    whole, _, rest = stamp.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    return f"{whole}.{digits:0<9}"


def network_name(project_id: str) -> str:
    return f"cellar-net-{project_id}"


def bridge_name(project_id: str) -> str:
    """The Linux bridge of a project network (at most 15 characters): the firewall's
    rules find every project network by its prefix."""
    return BRIDGE_PREFIX + hashlib.sha256(project_id.encode()).hexdigest()[:11]


def bound_port(container: Any, port: int) -> int:
    """The host port a container is configured to publish its TCP ``port`` on (known
    before it starts, unlike :func:`host_port`)."""
    bindings = (container.attrs.get("HostConfig", {}).get("PortBindings") or {}).get(
        f"{port}/tcp"
    ) or []
    if not bindings or not bindings[0].get("HostPort"):
        raise ComputeError(f"container {container.name} has no fixed host port for {port}")
    return int(bindings[0]["HostPort"])


class DockerDriver:
    """Talks to the Docker Engine API (``DOCKER_HOST`` honoured)."""

    def __init__(
        self,
        client: Any | None = None,
        volumes: LoopVolumes | None = None,
        firewall: Firewall | None = None,
    ) -> None:
        self._client = client
        self.volumes = volumes
        self.firewall = firewall or Firewall.off()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.call("connect to the Docker engine", docker.from_env)
        return self._client

    def call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"cannot {what}: image not found ({exc.explanation})") from exc
        except docker.errors.APIError as exc:
            raise ComputeError(f"cannot {what}: {exc.explanation or exc}") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ComputeError(f"cannot {what}: {exc}") from exc

    def find(self, kind: str, name: str) -> Any | None:
        collection = getattr(self.client, kind)
        try:
            return self.call(f"look up {name}", lambda: collection.get(name))
        except ComputeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise

    def ensure_network(self, project_id: str) -> str:
        """The id of the project's network, made if missing.

        Workers provisioning in one project at once may each create the network, and
        Docker allows two networks of one name. Every caller then settles on the same
        one, the oldest, and removes the others, which nothing has joined yet.
        """
        name = network_name(project_id)
        found = self._networks(name)
        if not found:
            logger.info("creating network %s", name)
            try:
                self.call(
                    f"create network {name}",
                    lambda: self.client.networks.create(
                        name,
                        driver="bridge",
                        labels={"cellar.project": project_id},
                        options={"com.docker.network.bridge.name": bridge_name(project_id)},
                    ),
                )
            except ComputeError:
                if not self._networks(name):  # not a rival's network that won the race
                    raise
            found = self._networks(name)
        keep, *extra = found
        for network in extra:
            logger.info("removing duplicate network %s (%s)", name, network["Id"][:12])
            remove = functools.partial(self.client.api.remove_network, network["Id"])
            self.remove_named(name, remove)
        return str(keep["Id"])

    def _networks(self, name: str) -> list[dict[str, Any]]:
        """Networks called exactly ``name``, the oldest first (ties by id)."""
        listed = self.call(f"list networks {name}", lambda: self.client.api.networks(names=[name]))
        exact = [n for n in listed if n.get("Name") == name]
        return sorted(exact, key=lambda n: (created(n.get("Created", "")), n["Id"]))

    def ensure_volume(self, instance_id: str, project_id: str, size_gb: int) -> str:
        if self.volumes is not None:
            return str(self.volumes.ensure(instance_id, size_gb))
        name = volume_name(instance_id)
        if self.find("volumes", name) is None:
            logger.info("creating volume %s", name)
            labels = {
                LABEL: instance_id,
                "cellar.project": project_id,
                "cellar.size_gb": str(size_gb),
            }
            self.call(
                f"create volume {name}", lambda: self.client.volumes.create(name, labels=labels)
            )
        return name

    def ensure_container(self, spec: ContainerSpec) -> Ports:
        name = container_name(spec.instance_id)
        container = self.find("containers", name)
        if container is None:
            logger.info("creating container %s from %s", name, spec.image)
            container = self.call(f"create container {name}", lambda: self._create(spec))
        if container.status != "running":
            if self.firewall.enabled:  # the access rules hold before the port first opens
                port = bound_port(container, spec.engine_port)
                self.firewall.apply(Allowed.of(spec.instance_id, port, spec.allowed_cidrs))
            self.remount_volume(spec.instance_id)
            try:
                self.call(f"start container {name}", container.start)
            except ComputeError as exc:
                if "port is already allocated" in exc.message:
                    # another process took one of the ports chosen for it: choose again
                    self.remove_named(name, lambda: container.remove(force=True))
                raise
            self.call(f"inspect container {name}", container.reload)
        return self._ports(container, spec)

    def _create(self, spec: ContainerSpec) -> Any:
        memory = f"{spec.memory_mb}m"
        labels = {LABEL: spec.instance_id, "cellar.project": spec.project_id}
        # the folder that holds the data mount; Docker makes the volume on first use
        spool = docker.types.Mount(
            str(PurePosixPath(spec.data_path).parent),
            spool_name(spec.instance_id),
            type="volume",
            labels=labels,
        )
        data = docker.types.Mount(spec.data_path, volume_name(spec.instance_id), type="volume")
        if self.volumes is not None and self.volumes.exists(spec.instance_id):
            # a bind of the folder inside the mounted file system: Docker refuses to
            # start the container while that file system is not mounted
            source = str(self.volumes.data_dir(spec.instance_id))
            data = docker.types.Mount(spec.data_path, source, type="bind")
        mounts = [spool, data]
        if spec.tls_dir:
            mounts.append(docker.types.Mount(TLS_PATH, spec.tls_dir, type="bind", read_only=True))
        return self.client.containers.create(
            spec.image,
            name=container_name(spec.instance_id),
            detach=True,
            init=True,
            labels={**labels, "cellar.request_id": spec.request_id},
            environment={"CELLAR_INSTANCE_ID": spec.instance_id},
            mem_limit=memory,
            memswap_limit=memory,
            cpu_period=CPU_PERIOD,
            cpu_quota=cpu_quota(spec.vcpus),
            # fixed host ports, chosen now, so that a restart keeps the instance's address
            ports={
                f"{spec.engine_port}/tcp": (spec.publish_host, free_port(spec.publish_host)),
                f"{spec.agent_port}/tcp": ("127.0.0.1", free_port("127.0.0.1")),
            },
            network=self.ensure_network(spec.project_id),
            restart_policy={"Name": "unless-stopped"},
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
            mounts=mounts,
            **HARDENING,
        )

    def published_ports(self, instance_id: str, engine_port: int, agent_port: int) -> Ports | None:
        """Where a running container's ports are published now (they change on restart)."""
        container = self.find("containers", container_name(instance_id))
        if container is None or container.status != "running":
            return None
        return self._host_ports(container, engine_port, agent_port)

    def _ports(self, container: Any, spec: ContainerSpec) -> Ports:
        return self._host_ports(container, spec.engine_port, spec.agent_port)

    def _host_ports(self, container: Any, engine_port: int, agent_port: int) -> Ports:
        return Ports(
            engine=host_port(container, engine_port), agent=host_port(container, agent_port)
        )

    def update_limits(self, instance_id: str, memory_mb: int, vcpus: float) -> None:
        """Change a running container's memory and CPU limits in place."""
        name = container_name(instance_id)
        container = self.find("containers", name)
        if container is None:
            raise ComputeError(f"container {name} does not exist")
        memory = memory_mb * 1024 * 1024
        logger.info("setting %s to %d MB and %.1f vCPU", name, memory_mb, vcpus)
        self.call(
            f"update the limits of {name}",
            lambda: container.update(
                mem_limit=memory,
                memswap_limit=memory,
                cpu_period=CPU_PERIOD,
                cpu_quota=cpu_quota(vcpus),
            ),
        )

    def container_state(self, instance_id: str) -> str | None:
        container = self.find("containers", container_name(instance_id))
        return None if container is None else str(container.status)

    def remove_container(self, instance_id: str) -> bool:
        name = container_name(instance_id)
        container = self.find("containers", name)
        if container is None:
            return False
        logger.info("removing container %s", name)
        return self.remove_named(name, lambda: container.remove(force=True, v=False))

    def start_container(self, instance_id: str) -> bool:
        """Start a stopped container, its volume mounted first; False if it does not exist."""
        name = container_name(instance_id)
        container = self.find("containers", name)
        if container is None:
            return False
        self.remount_volume(instance_id)
        if container.status != "running":
            logger.info("starting container %s", name)
            self.call(f"start container {name}", container.start)
        return True

    def stop_container(self, instance_id: str) -> bool:
        """Stop a running container (it stays stopped until started); False if it does not exist."""
        name = container_name(instance_id)
        container = self.find("containers", name)
        if container is None:
            return False
        if container.status == "running":
            logger.info("stopping container %s", name)
            self.call(f"stop container {name}", lambda: container.stop(timeout=STOP_TIMEOUT))
        return True

    def remount_volume(self, instance_id: str) -> bool:
        """Mount again a volume that lost its mount (host restart); True if it had to."""
        return self.volumes is not None and self.volumes.remount(instance_id)

    def grow_volume(self, instance_id: str, size_gb: int, offline: bool = False) -> None:
        """Grow a size-enforced volume (``offline`` once its container is stopped)."""
        if self.volumes is None or not self.volumes.exists(instance_id):
            raise VolumeNotResizable(
                f"the data of instance {instance_id} is on a Docker volume whose size is "
                "not enforced; it cannot be resized"
            )
        self.volumes.grow(instance_id, size_gb, offline=offline)

    def remove_volume(self, instance_id: str) -> bool:
        """Remove the instance's data and its spool; False if neither was there."""
        removed = self.volumes is not None and self.volumes.remove(instance_id)
        for name in (volume_name(instance_id), spool_name(instance_id)):
            volume = self.find("volumes", name)
            if volume is not None:
                logger.info("removing volume %s", name)
                removed = (
                    self.remove_named(name, functools.partial(volume.remove, force=True)) or removed
                )
        return removed

    def remove_network_if_unused(self, project_id: str) -> bool:
        name = network_name(project_id)
        removed = False
        for listed in self._networks(name):
            network_id = str(listed["Id"])
            inspect = functools.partial(self.client.api.inspect_network, network_id)
            if self.call(f"inspect network {name}", inspect).get("Containers"):
                continue
            logger.info("removing network %s (%s)", name, network_id[:12])
            remove = functools.partial(self.client.api.remove_network, network_id)
            removed = self.remove_named(name, remove) or removed
        return removed

    def remove_named(self, name: str, remove: Callable[[], object]) -> bool:
        """Run ``remove``; False when the thing was already gone (someone else removed it)."""
        try:
            self.call(f"remove {name}", remove)
        except ComputeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return False
            raise
        return True
