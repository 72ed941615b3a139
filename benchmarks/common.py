"""What the benchmarks share: a private ``cellar serve``, waiting, and summaries.

Use :func:`private_cellar` (or :func:`given` for a Cellar already running) as the
context of a benchmark; both yield a :class:`Cellar`, whose ``serve_pid`` is set only
for the private one, so a benchmark can find the worker processes it started.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

POLL = 0.02
DEFAULT_VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}


@dataclasses.dataclass(frozen=True)
class Cellar:
    """A Cellar to measure: its URL, and the pid of ``cellar serve`` when it is ours."""

    url: str
    serve_pid: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_cellar() -> Iterator[Cellar]:
    """A ``cellar serve`` of our own, stopped (with its children) on exit."""
    with tempfile.TemporaryDirectory(prefix="cellar-bench-", ignore_cleanup_errors=True) as home:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLAR_")}
        env.update({"CELLAR_HOME": home, "CELLAR_API_PORT": str(port)})
        log = open(Path(home) / "serve.log", "wb")
        serve = subprocess.Popen(
            [sys.executable, "-m", "cellar.cli.main", "serve"], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait(lambda: _answers(url), 90, "the private Cellar API")
            yield Cellar(url, serve.pid)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
            log.close()


@contextmanager
def given(url: str) -> Iterator[Cellar]:
    yield Cellar(url.rstrip("/"))


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
