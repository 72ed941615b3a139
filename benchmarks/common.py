"""What the benchmarks share: a private ``cellar serve``, waiting, and summaries.

Use :func:`private_cellar` (or :func:`given` for a Cellar already running) as the
context of a benchmark; both yield a :class:`Cellar`, whose ``serve_pid`` is set only
for the private one, so a benchmark can find the worker processes it started.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

POLL = 0.02
DEFAULT_VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}


@dataclasses.dataclass(frozen=True)
class Cellar:
    """A Cellar to measure: its URL, the pid of ``cellar serve`` when it is ours, and a
    token of the project the benchmark works in."""

    url: str
    serve_pid: int | None = None
    token: str = ""
    project_id: str = ""
    server: Server | None = None  # ours, to start again with other settings

    @property
    def base(self) -> str:
        """The project's API root, e.g. ``http://127.0.0.1:8779/v1.0/<project id>``."""
        return f"{self.url}/v1.0/{self.project_id}"

    def http(self) -> requests.Session:
        """A session that sends the project's token."""
        session = requests.Session()
        session.headers["X-Auth-Token"] = self.token
        return session


def password_login(auth_url: str, user: str, password: str, project: str) -> tuple[str, str]:
    """A Keystone v3 token and the project's id, for a user's password."""
    domain = {"name": "Default"}
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": domain, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": domain}},
        }
    }
    reply = requests.post(f"{auth_url.rstrip('/')}/auth/tokens", json=body, timeout=30)
    reply.raise_for_status()
    return reply.headers["X-Subject-Token"], str(reply.json()["token"]["project"]["id"])


def openrc(path: Path) -> dict[str, str]:
    """The variables an ``admin-openrc`` exports."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value.strip("'\"")
    return found


def project_member(auth_url: str, admin_token: str, project: str) -> tuple[str, str]:
    """A new project named ``project`` and a member user of it: their token and its id."""
    http = requests.Session()
    http.headers["X-Auth-Token"] = admin_token
    base = auth_url.rstrip("/")

    def call(method: str, path: str, **kwargs: Any) -> Any:
        reply = http.request(method, base + path, timeout=30, **kwargs)
        reply.raise_for_status()
        return reply.json() if reply.content else None

    project_id = call("POST", "/projects", json={"project": {"name": project}})["project"]["id"]
    password, name = secrets.token_urlsafe(18), f"{project}-bench"
    user_id = call("POST", "/users", json={"user": {"name": name, "password": password}})["user"][
        "id"
    ]
    role = call("GET", "/roles", params={"name": "member"})["roles"][0]["id"]
    call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role}")
    return password_login(auth_url, name, password, project)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``cellar serve`` of our own in ``home``, which can start again with other
    settings (its instances' containers run on meanwhile)."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, settings: Mapping[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLAR_")}
        env.update({"CELLAR_HOME": str(self.home), "CELLAR_API_PORT": str(self.port)})
        env.update(settings or {})
        with open(self.home / "serve.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cellar.cli.main", "serve"], env=env, stdout=log, stderr=log
            )
        wait(lambda: _answers(self.url), 90, "the private Cellar API")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def restart(self, settings: Mapping[str, str] | None = None) -> None:
        """Stop, then serve again with ``settings`` (``CELLAR_*`` variables) added."""
        self.stop()
        self.start(settings)


@contextmanager
def private_cellar(project: str = "") -> Iterator[Cellar]:
    """A ``cellar serve`` of our own, stopped (with its children) on exit, and a member
    of a new project ``project`` in it."""
    with tempfile.TemporaryDirectory(prefix="cellar-bench-", ignore_cleanup_errors=True) as home:
        server = Server(Path(home), free_port())
        try:
            server.start()
            admin = openrc(Path(home) / "admin-openrc")
            admin_token, _ = password_login(
                admin["OS_AUTH_URL"],
                admin["OS_USERNAME"],
                admin["OS_PASSWORD"],
                admin["OS_PROJECT_NAME"],
            )
            name = project or f"bench-{secrets.token_hex(4)}"
            token, project_id = project_member(admin["OS_AUTH_URL"], admin_token, name)
            yield Cellar(server.url, server.pid, token, project_id, server)
        finally:
            server.stop()


@contextmanager
def given(url: str) -> Iterator[Cellar]:
    """A Cellar already running, used as the ``OS_*`` variables' user and project."""
    token, project_id = password_login(
        os.environ["OS_AUTH_URL"],
        os.environ["OS_USERNAME"],
        os.environ["OS_PASSWORD"],
        os.environ["OS_PROJECT_NAME"],
    )
    yield Cellar(url.rstrip("/"), None, token, project_id)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=1).ok
    except requests.RequestException:
        return False


def wait(check: Callable[[], bool], within: float, what: str, every: float = POLL) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} not ready after {within} s")


def progress(message: str) -> None:
    """A line for the person watching (stderr); stdout is kept for the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(samples: list[float]) -> dict[str, object]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "stdev_s": round(statistics.stdev(samples), 3) if len(samples) > 1 else 0.0,
        "samples_s": [round(s, 3) for s in samples],
    }


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid``; empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers_of(serve_pid: int) -> list[int]:
    """The pids of the Celery workers ``cellar serve`` runs (its direct children)."""
    workers = [p for p in children(serve_pid) if " worker " in cmdline(p)]
    if not workers:
        raise ProcessLookupError(f"cellar serve (pid {serve_pid}) runs no worker")
    return workers
