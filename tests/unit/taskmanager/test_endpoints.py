"""The replica set's HAProxy endpoint: the rendered config and what ensure asks of Docker."""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from cellar.errors import ComputeError
from taskmanager.drivers.docker import DockerDriver, ImageMissing
from taskmanager.drivers.endpoints import (
    LOADED_FILE,
    Backend,
    EndpointDriver,
    read_file,
    render,
    tar_of,
    wait_listening,
)
from tests.unit.fakes import NetworksApi

HAPROXY = Path("/usr/sbin/haproxy")
BAKED_CONFIG = Path(__file__).resolve().parents[3] / "images/haproxy/haproxy.cfg"
PRIMARY = Backend.instance("0b6b1a9e-primary", 5432)
REPLICAS = [Backend.instance("replica-1", 5432), Backend.instance("replica-2", 5432)]


def section(config: str, header: str) -> list[str]:
    """The stripped lines of one section, up to the next blank line."""
    lines = config.split(f"\n{header}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in lines.splitlines()]


def haproxy_check(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    if not HAPROXY.exists():
        pytest.skip(f"{HAPROXY} is not installed (scripts/test-deps.sh installs it)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    return subprocess.run(
        [str(HAPROXY), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )


def test_rw_goes_to_the_primary_and_ro_to_the_replicas_then_the_primary() -> None:
    config = render(PRIMARY, REPLICAS)
    assert section(config, "listen rw") == [
        "bind :6000",
        "server 0b6b1a9e-primary cellar-0b6b1a9e-primary:5432 check",
    ]
    assert section(config, "listen ro") == [
        "bind :6001",
        "balance leastconn",
        "server replica-1 cellar-replica-1:5432 check",
        "server replica-2 cellar-replica-2:5432 check",
        "server 0b6b1a9e-primary cellar-0b6b1a9e-primary:5432 check backup",
    ]


def test_checks_are_fast_sessions_long_and_unresolved_names_allowed() -> None:
    config = render(PRIMARY, [])
    defaults = section(config, "defaults")
    assert "mode tcp" in defaults
    assert "timeout connect 2s" in defaults
    assert {"timeout client 24h", "timeout server 24h"} <= set(defaults)
    default_server = next(line for line in defaults if line.startswith("default-server"))
    for words in (
        "inter 500ms fall 2 rise 1",
        "on-marked-down shutdown-sessions",
        "resolvers docker",
        "init-addr last,libc,none",
    ):
        assert words in default_server
    assert "nameserver docker 127.0.0.11:53" in section(config, "resolvers docker")
    assert "hard-stop-after 2s" in section(config, "global")
    assert section(config, "listen ro")[-1].endswith("check backup")


def test_the_image_starts_with_the_config_of_a_set_with_no_servers() -> None:
    assert BAKED_CONFIG.read_text() == render(None, [])
    assert section(render(None, []), "listen rw") == ["bind :6000"]


@pytest.mark.parametrize(
    ("rw", "ro"),
    [
        (Backend("bad name", "cellar-x", 5432), []),
        (Backend("x", "cellar-x\n    server evil", 5432), []),
        (Backend("x", "cellar-x", 0), []),
        (PRIMARY, [REPLICAS[0], REPLICAS[0]]),
        (PRIMARY, [PRIMARY]),
    ],
)
def test_unusable_or_repeated_backends_are_refused(rw: Backend, ro: list[Backend]) -> None:
    with pytest.raises(ValueError, match="backend"):
        render(rw, ro)


@pytest.mark.parametrize(
    ("rw", "ro"), [(PRIMARY, REPLICAS), (PRIMARY, []), (None, REPLICAS), (None, [])]
)
def test_haproxy_accepts_the_config_while_no_name_resolves(
    tmp_path: Path, rw: Backend | None, ro: list[Backend]
) -> None:
    result = haproxy_check(tmp_path, render(rw, ro))
    assert result.returncode == 0, result.stdout + result.stderr


def test_files_go_in_and_come_out_of_tars() -> None:
    tar = tar_of({"haproxy.cfg": "global\n", LOADED_FILE: "abc"})
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        assert {m.name: m.mode for m in archive.getmembers()} == {
            "haproxy.cfg": 0o644,
            LOADED_FILE: 0o644,
        }
    assert read_file([tar[:100], tar[100:]], "haproxy.cfg") == "global\n"
    assert read_file([tar], "other") is None


# ensure and remove against a fake Docker client


class FakeExec:
    def __init__(self, exit_code: int, output: bytes = b"") -> None:
        self.exit_code, self.output = exit_code, output


class FakeContainer:
    def __init__(self, name: str, kwargs: dict[str, Any]) -> None:
        self.name, self.kwargs = name, kwargs
        self.status = "created"
        self.files: dict[str, str] = {}
        self.calls: list[str] = []
        self.check_exit = 0
        rw, ro = kwargs["ports"]["6000/tcp"], kwargs["ports"]["6001/tcp"]
        bindings = {
            "6000/tcp": [{"HostIp": rw[0], "HostPort": str(rw[1])}],
            "6001/tcp": [{"HostIp": ro[0], "HostPort": str(ro[1])}],
        }
        self.attrs: dict[str, Any] = {
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {"Ports": {}},
        }
        self.removed = False

    def get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
        name = path.rsplit("/", 1)[1]
        if name not in self.files:
            raise docker.errors.NotFound(f"no {path}")
        return iter([tar_of({name: self.files[name]})]), {}

    def put_archive(self, folder: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member)
                assert extracted is not None
                self.files[member.name] = extracted.read().decode()
                self.calls.append(f"put {folder}/{member.name}")
        return True

    def exec_run(self, argv: list[str]) -> FakeExec:
        self.calls.append("exec " + " ".join(argv[:2]))
        return FakeExec(self.check_exit, b"[ALERT] bad config")

    def kill(self, signal: str) -> None:
        self.calls.append(f"kill {signal}")

    def start(self) -> None:
        self.calls.append("start")
        self.status = "running"

    def reload(self) -> None:
        if self.status == "running":
            self.attrs["NetworkSettings"]["Ports"] = self.attrs["HostConfig"]["PortBindings"]

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeContainers:
    def __init__(self) -> None:
        self.by_name: dict[str, FakeContainer] = {}
        self.created: list[FakeContainer] = []

    def get(self, name: str) -> FakeContainer:
        container = self.by_name.get(name)
        if container is None or container.removed:
            raise docker.errors.NotFound(f"no container {name}")
        return container

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        if image != "cellar/haproxy:2.6":
            raise docker.errors.ImageNotFound(f"no image {image}")
        container = FakeContainer(kwargs["name"], {"image": image, **kwargs})
        self.by_name[container.name] = container
        self.created.append(container)
        return container


class FakeClient:
    def __init__(self) -> None:
        self.api = NetworksApi()
        self.containers = FakeContainers()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def driver(client: FakeClient, image: str = "cellar/haproxy:2.6") -> EndpointDriver:
    return EndpointDriver(compute=DockerDriver(client=client), image=image, listening=heard)


def heard(host: str, ports: Sequence[int]) -> None:
    """The fake client's ports listen at once."""


def test_ensure_creates_configures_and_starts_the_container(client: FakeClient) -> None:
    ports = driver(client).ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1", 41000, 41001)
    assert ports == (41000, 41001)
    (container,) = client.containers.created
    assert container.name == "cellar-endpoint-s1"
    assert container.kwargs["labels"] == {"cellar.endpoint": "s1", "cellar.project": "p1"}
    assert container.kwargs["network"] == "id-cellar-net-p1"  # the id of the project network
    assert container.kwargs["restart_policy"] == {"Name": "unless-stopped"}
    config = render(PRIMARY, REPLICAS)
    assert container.files == {
        "haproxy.cfg": config,
        LOADED_FILE: hashlib.sha256(config.encode()).hexdigest(),
    }
    assert container.calls == [
        "put /etc/haproxy/haproxy.cfg",
        f"put /etc/haproxy/{LOADED_FILE}",
        "start",
    ]


def test_ensure_picks_free_ports_and_keeps_them(client: FakeClient) -> None:
    endpoints = driver(client)
    first = endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1")
    assert 0 not in first and first[0] != first[1]
    assert endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1") == first
    assert endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1", *first) == first
    assert len(client.containers.created) == 1


def test_nothing_changed_means_nothing_done(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    (container,) = client.containers.created
    container.calls.clear()
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    assert container.calls == []


def test_a_new_primary_is_checked_written_and_reloaded(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    (container,) = client.containers.created
    container.calls.clear()
    endpoints.ensure("s1", "p1", REPLICAS[0], [REPLICAS[1]], "127.0.0.1")
    assert container.files["haproxy.cfg"] == render(REPLICAS[0], [REPLICAS[1]])
    assert container.calls == [
        "put /etc/haproxy/haproxy.cfg",
        "exec haproxy -c",
        "kill SIGUSR2",
        f"put /etc/haproxy/{LOADED_FILE}",
    ]


def test_a_config_written_but_never_loaded_is_reloaded_on_the_next_run(
    client: FakeClient,
) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    (container,) = client.containers.created
    # a worker died between writing the new config and reloading HAProxy
    container.files["haproxy.cfg"] = render(REPLICAS[0], [])
    container.calls.clear()
    endpoints.ensure("s1", "p1", REPLICAS[0], [], "127.0.0.1")
    assert "kill SIGUSR2" in container.calls


def test_a_refused_config_is_not_loaded(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    (container,) = client.containers.created
    loaded = container.files[LOADED_FILE]
    container.check_exit = 1
    with pytest.raises(ComputeError, match=r"refuses the config.*bad config"):
        endpoints.ensure("s1", "p1", REPLICAS[0], [], "127.0.0.1")
    assert "kill SIGUSR2" not in container.calls
    assert container.files[LOADED_FILE] == loaded


def test_a_stopped_endpoint_is_started_with_its_new_config(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, REPLICAS, "127.0.0.1")
    (container,) = client.containers.created
    container.status = "exited"
    container.calls.clear()
    endpoints.ensure("s1", "p1", REPLICAS[0], [], "127.0.0.1")
    assert container.calls == [
        "put /etc/haproxy/haproxy.cfg",
        f"put /etc/haproxy/{LOADED_FILE}",
        "start",
    ]


def test_other_ports_asked_for_make_the_container_again(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1", 41000, 41001)
    assert endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1", 42000, 42001) == (42000, 42001)
    first, second = client.containers.created
    assert first.removed and not second.removed


def test_remove_says_whether_there_was_an_endpoint(client: FakeClient) -> None:
    endpoints = driver(client)
    endpoints.ensure("s1", "p1", PRIMARY, [], "127.0.0.1")
    assert endpoints.remove("s1") is True
    assert endpoints.remove("s1") is False


def test_a_missing_image_is_reported_as_such(client: FakeClient) -> None:
    with pytest.raises(ImageMissing, match="image not found"):
        driver(client, image="cellar/haproxy:0").ensure("s1", "p1", PRIMARY, [], "127.0.0.1")


def test_the_image_follows_the_settings_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLAR_IMAGE_PREFIX", "registry.example/cellar")
    endpoints = EndpointDriver(compute=DockerDriver(client=FakeClient()))
    assert endpoints.image == "registry.example/cellar/haproxy:2.6"


def test_an_endpoint_is_handed_out_only_once_its_ports_accept_connections() -> None:
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        open_port, shut_port = listening.getsockname()[1], closed.getsockname()[1]
        wait_listening("0.0.0.0", [open_port], within=2)  # noqa: S104
        with pytest.raises(ComputeError, match=f"127.0.0.1:{shut_port} does not accept"):
            wait_listening("127.0.0.1", [open_port, shut_port], within=0.3)
