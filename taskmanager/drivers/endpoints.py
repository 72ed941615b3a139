"""Stable endpoints for a replica set: one HAProxy container per set, on the tenant network.

Use it once the set's instance containers exist: ``ensure`` is told who the primary
("rw") and the replicas ("ro") are and makes the container ``cellar-endpoint-<set_id>``
route to them; it is idempotent, so every step of a failover may call it again. Its two
host ports never change for the life of the container: the control plane decides who
is primary, HAProxy only health-checks (TCP) and drops a dead server within a second.
Docker errors are translated by ``DockerDriver``; the config is written with
``put_archive`` and loaded with SIGUSR2 to HAProxy's master process (PID 1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
import socket
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import docker.errors

from cellar import settings as settings_module
from cellar.errors import ComputeError
from taskmanager.drivers.docker import (
    DockerDriver,
    container_name,
    free_port,
    host_port,
)

logger = logging.getLogger(__name__)

IMAGE = "haproxy:2.6"  # under the settings' image_prefix, built by images/build.py
LABEL = "cellar.endpoint"
CONFIG_DIR = "/etc/haproxy"
CONFIG_FILE = "haproxy.cfg"
LOADED_FILE = "loaded.sha256"  # the digest of the config HAProxy was last given
RW_PORT = 6000  # container ports; the host ports are chosen at creation and kept
RO_PORT = 6001
MEMORY = "256m"
STOP_TIMEOUT = 5
LISTEN_WITHIN = 15.0  # seconds a new or started endpoint may take to bind its ports
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

_GLOBAL = """\
# Rendered by taskmanager/drivers/endpoints.py; rewritten on every change of primary.
global
    maxconn 4000
    hard-stop-after 2s

resolvers docker
    nameserver docker 127.0.0.11:53
    resolve_retries 2
    timeout resolve 1s
    timeout retry 500ms
    hold valid 10s
    hold other 1s
    hold refused 1s
    hold nx 1s
    hold timeout 1s
    hold obsolete 1s

defaults
    mode tcp
    option tcpka
    timeout connect 2s
    timeout client 24h
    timeout server 24h
    timeout client-fin 30s
    timeout server-fin 30s
    timeout check 1s
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions \
resolvers docker resolve-prefer ipv4 init-addr last,libc,none
"""


@dataclasses.dataclass(frozen=True)
class Backend:
    """One database server as HAProxy reaches it on the tenant network."""

    name: str
    host: str
    port: int

    @classmethod
    def instance(cls, instance_id: str, port: int) -> Backend:
        """The instance's container, by its name on the tenant network."""
        return cls(name=instance_id, host=container_name(instance_id), port=port)


def render(rw: Backend | None, ro: Sequence[Backend]) -> str:
    """The HAProxy config: "rw" on the primary, "ro" over the replicas, primary as backup."""
    for backend in [*([rw] if rw else []), *ro]:
        _check(backend)
    names = [backend.name for backend in ro]
    if len(set(names)) != len(names) or (rw is not None and rw.name in names):
        raise ValueError(f"backend names must be distinct, got {names} and {rw}")
    lines = [_GLOBAL, "listen rw", f"    bind :{RW_PORT}"]
    if rw is not None:
        lines.append(_server(rw))
    lines += ["", "listen ro", f"    bind :{RO_PORT}", "    balance leastconn"]
    lines += [_server(backend) for backend in ro]
    if rw is not None:
        lines.append(_server(rw, backup=True))
    return "\n".join(lines) + "\n"


def _check(backend: Backend) -> None:
    if not NAME.match(backend.name) or not HOST.match(backend.host):
        raise ValueError(f"not a usable backend name or host: {backend}")
    if not 0 < backend.port < 65536:
        raise ValueError(f"not a TCP port for a backend: {backend}")


def _server(backend: Backend, backup: bool = False) -> str:
    line = f"    server {backend.name} {backend.host}:{backend.port} check"
    return line + " backup" if backup else line


def wait_listening(host: str, ports: Sequence[int], within: float = LISTEN_WITHIN) -> None:
    """Return once every port accepts a connection (HAProxy has bound it); ComputeError
    after ``within`` seconds. An endpoint handed out must route at once."""
    address = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    end = time.monotonic() + within
    for port in ports:
        while True:
            try:
                with socket.create_connection((address, port), timeout=1):
                    break
            except OSError as exc:
                if time.monotonic() > end:
                    raise ComputeError(
                        f"the endpoint on {address}:{port} does not accept connections"
                    ) from exc
                time.sleep(0.02)


def endpoint_name(set_id: str) -> str:
    return f"cellar-endpoint-{set_id}"


def tar_of(files: dict[str, str]) -> bytes:
    """An in-memory tar of these files (name: text), for ``put_archive``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_file(chunks: Iterable[bytes], name: str) -> str | None:
    """One file's text from the tar stream of ``get_archive``."""
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            return None
        return None if member is None else member.read().decode()


class EndpointDriver:
    """Runs and reconfigures the HAProxy container of each replica set."""

    def __init__(
        self,
        compute: DockerDriver | None = None,
        image: str | None = None,
        listening: Callable[[str, Sequence[int]], None] | None = None,
    ) -> None:
        self.compute = compute or DockerDriver()
        self.image = image or f"{settings_module.load().image_prefix}/{IMAGE}"
        self.listening = listening or wait_listening

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
        """Make the set's endpoint route as told; returns its host ports (rw, ro).

        Ports of 0 are chosen free at creation and kept afterwards; a container
        published elsewhere than the non-zero ports asked for is made again.
        """
        name = endpoint_name(set_id)
        config = render(rw, ro)
        digest = hashlib.sha256(config.encode()).hexdigest()
        container = self.compute.find("containers", name)
        if container is not None and not self._published_as(
            container, publish_host, rw_port, ro_port
        ):
            logger.info("recreating %s on %s:%d/%d", name, publish_host, rw_port, ro_port)
            stale = container
            self.compute.remove_named(name, lambda: stale.remove(force=True))
            container = None
        if container is None:
            logger.info("creating endpoint container %s from %s", name, self.image)
            container = self.compute.call(
                f"create container {name}",
                lambda: self._create(set_id, project_id, publish_host, rw_port, ro_port),
            )
        running = container.status == "running"
        if self._loaded(container) != digest:
            # the digest is written only once HAProxy has the config, so a step
            # interrupted between the write and the reload reloads on its next run
            self._put(container, {CONFIG_FILE: config})
            if running:
                self._reload(container)
            self._put(container, {LOADED_FILE: digest})
        if not running:
            self._start(container)
        ports = self._host_ports(container)
        self.listening(publish_host, ports)
        return ports

    def remove(self, set_id: str) -> bool:
        """Remove the set's endpoint container; False if there was none."""
        name = endpoint_name(set_id)
        container = self.compute.find("containers", name)
        if container is None:
            return False
        logger.info("removing endpoint container %s", name)
        return self.compute.remove_named(name, lambda: container.remove(force=True))

    def _create(
        self, set_id: str, project_id: str, publish_host: str, rw_port: int, ro_port: int
    ) -> Any:
        return self.compute.client.containers.create(
            self.image,
            name=endpoint_name(set_id),
            detach=True,
            labels={LABEL: set_id, "cellar.project": project_id},
            ports={
                f"{RW_PORT}/tcp": (publish_host, rw_port or free_port(publish_host)),
                f"{RO_PORT}/tcp": (publish_host, ro_port or free_port(publish_host)),
            },
            network=self.compute.ensure_network(project_id),
            mem_limit=MEMORY,
            memswap_limit=MEMORY,
            restart_policy={"Name": "unless-stopped"},
            stop_signal="SIGTERM",
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        )

    def _published_as(self, container: Any, host: str, rw_port: int, ro_port: int) -> bool:
        """Whether the container's fixed bindings match what is asked (0: any port)."""
        bindings = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
        for port, wanted in ((RW_PORT, rw_port), (RO_PORT, ro_port)):
            current = (bindings.get(f"{port}/tcp") or [{}])[0]
            if current.get("HostIp", "") != host:
                return False
            if wanted and str(current.get("HostPort", "")) != str(wanted):
                return False
        return True

    def _loaded(self, container: Any) -> str | None:
        """The digest of the config HAProxy runs with, None when not recorded."""
        path = f"{CONFIG_DIR}/{LOADED_FILE}"
        try:
            stream, _ = self.compute.call(
                f"read {path} of {container.name}", lambda: container.get_archive(path)
            )
        except ComputeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        return read_file(stream, LOADED_FILE)

    def _put(self, container: Any, files: dict[str, str]) -> None:
        done = self.compute.call(
            f"write {', '.join(files)} into {container.name}",
            lambda: container.put_archive(CONFIG_DIR, tar_of(files)),
        )
        if not done:
            raise ComputeError(f"cannot write {', '.join(files)} into {container.name}")

    def _reload(self, container: Any) -> None:
        check = self.compute.call(
            f"check the config of {container.name}",
            lambda: container.exec_run(
                ["haproxy", "-c", "-q", "-f", f"{CONFIG_DIR}/{CONFIG_FILE}"]
            ),
        )
        if check.exit_code != 0:
            output = check.output.decode(errors="replace").strip()
            raise ComputeError(f"HAProxy refuses the config of {container.name}: {output}")
        logger.info("reloading %s", container.name)
        self.compute.call(f"reload {container.name}", lambda: container.kill(signal="SIGUSR2"))

    def _start(self, container: Any) -> None:
        logger.info("starting endpoint container %s", container.name)
        try:
            self.compute.call(f"start container {container.name}", container.start)
        except ComputeError as exc:
            if "port is already allocated" in exc.message:
                # another process took a port chosen for it: the next attempt chooses again
                self.compute.remove_named(container.name, lambda: container.remove(force=True))
            raise
        self.compute.call(f"inspect container {container.name}", container.reload)

    def _host_ports(self, container: Any) -> tuple[int, int]:
        return host_port(container, RW_PORT), host_port(container, RO_PORT)
