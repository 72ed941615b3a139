"""A replica set's HAProxy endpoint against real containers: rw follows the primary it is told.

Two bare redis-servers from ``cellar/redis:7.0`` stand in for the set's databases;
each names itself through ``CONFIG GET dbfilename``, so a connection shows which
server it reached.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from taskmanager.drivers.docker import DockerDriver, container_name, network_name
from taskmanager.drivers.endpoints import Backend, EndpointDriver, endpoint_name

REDIS_IMAGE = "cellar/redis:7.0"
HOST = "127.0.0.1"
SWITCH_WITHIN = 3.0  # seconds from ensure to new connections reaching the new primary


@pytest.fixture
def project() -> Iterator[str]:
    name = f"ep-{uuid.uuid4().hex[:10]}"
    yield name
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"cellar.project={name}"}):
        container.remove(force=True)
    for network in client.networks.list(names=[network_name(name)]):
        network.remove()
    client.close()


def start_redis(project: str, who: str) -> Backend:
    """A bare redis-server on the project's network, answering ``who`` to CONFIG GET."""
    backend = Backend.instance(f"{project}-{who}", 6379)
    docker.from_env().containers.run(
        REDIS_IMAGE,
        entrypoint=["redis-server"],
        command=["--port", "6379", "--protected-mode", "no", "--save", "", "--dir", "/tmp",
                 "--dbfilename", who],
        name=container_name(backend.name),
        labels={"cellar.project": project},
        network=network_name(project),
        detach=True,
    )  # fmt: skip
    return backend


def whom(port: int) -> str:
    """Which redis-server a new connection to ``port`` reaches ("" if none answers)."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"CONFIG GET dbfilename\r\n")
            answer = sock.recv(256).decode()
    except OSError:
        return ""
    return answer.split("\r\n")[-2] if answer.startswith("*2") else ""


def wait_for(port: int, who: str, within: float) -> float:
    """Seconds until a new connection to ``port`` reaches ``who``; fails after ``within``."""
    started = time.monotonic()
    seen = ""
    while time.monotonic() - started < within:
        seen = whom(port)
        if seen == who:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"port {port} still reaches {seen or 'nothing'} after {within} s")


def open_session(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=2)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    return sock


def closed_within(sock: socket.socket, within: float) -> bool:
    """Whether the server side closes ``sock`` before ``within`` seconds pass."""
    end = time.monotonic() + within
    with sock:
        while time.monotonic() < end:
            try:
                sock.sendall(b"PING\r\n")
                if sock.recv(64) == b"":
                    return True
            except OSError:
                return True
            time.sleep(0.2)
    return False


def test_rw_follows_the_primary_and_ro_the_replicas(project: str) -> None:
    DockerDriver().ensure_network(project)
    a, b = start_redis(project, "A"), start_redis(project, "B")
    endpoints = EndpointDriver()
    set_id = f"{project}-set"

    rw, ro = endpoints.ensure(set_id, project, a, [b], HOST)
    wait_for(rw, "A", within=10)
    wait_for(ro, "B", within=5)

    started = time.monotonic()
    assert endpoints.ensure(set_id, project, a, [b], HOST) == (rw, ro)
    assert time.monotonic() - started < 1.0, "an ensure with nothing to change must be quick"

    session_to_a = open_session(rw)
    assert endpoints.ensure(set_id, project, b, [a], HOST) == (rw, ro)
    wait_for(rw, "B", within=SWITCH_WITHIN)
    wait_for(ro, "A", within=SWITCH_WITHIN)
    assert closed_within(session_to_a, within=5), "a session to the former primary stayed open"

    # no replica left: "ro" falls back to the primary
    docker.from_env().containers.get(container_name(a.name)).stop(timeout=1)
    wait_for(ro, "B", within=SWITCH_WITHIN)

    container = docker.from_env().containers.get(endpoint_name(set_id))
    assert container.labels["cellar.endpoint"] == set_id
    assert container.labels["cellar.project"] == project
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    assert endpoints.remove(set_id) is True
    assert endpoints.remove(set_id) is False


def test_a_stopped_endpoint_starts_again_on_its_ports(project: str) -> None:
    DockerDriver().ensure_network(project)
    a = start_redis(project, "A")
    endpoints = EndpointDriver()
    set_id = f"{project}-set"
    ports = endpoints.ensure(set_id, project, None, [], HOST)
    assert whom(ports[0]) == ""
    docker.from_env().containers.get(endpoint_name(set_id)).stop(timeout=1)
    assert endpoints.ensure(set_id, project, a, [], HOST) == ports
    wait_for(ports[0], "A", within=10)
    wait_for(ports[1], "A", within=5)
