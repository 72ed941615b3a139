"""``cellar serve``: the API, a Celery worker and beat on one machine, in the foreground.

Stops all of its children on Ctrl-C or SIGTERM, and all of them when one dies.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import requests

from cellar import settings as settings_module
from cellar.db import Database
from cellar.settings import Settings

logger = logging.getLogger(__name__)

STOP_GRACE = 15.0


def commands(settings: Settings) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "api": [
            python, "-m", "gunicorn",
            "--bind", f"{settings.api_host}:{settings.api_port}",
            "--worker-class", "gthread", "--workers", "2", "--threads", "8",
            "--log-level", "warning", "--graceful-timeout", "10",
            "api.app:main()",
        ],
        "worker": [
            python, "-m", "celery", "-A", "taskmanager.celery_app", "worker",
            "--pool", "threads", "--concurrency", "8", "--queues", "cellar",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "INFO",
        ],
        "beat": [
            python, "-m", "celery", "-A", "taskmanager.celery_app", "beat",
            "--loglevel", "INFO",
        ],
    }  # fmt: skip


def child_environment(base: dict[str, str]) -> dict[str, str]:
    """The environment of the API, worker and beat processes.

    glibc gives every thread its own malloc arena; the worker's threads stream backups in
    1 MiB pieces, and with an arena each the freed pieces are kept per thread. Two arenas
    keep the worker's memory near what it uses.
    """
    return {**base, "MALLOC_ARENA_MAX": base.get("MALLOC_ARENA_MAX", "2")}


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self) -> None:
        for name, argv in commands(self.settings).items():
            self.children[name] = subprocess.Popen(argv, env=child_environment(dict(os.environ)))
            logger.info("started %s (pid %d)", name, self.children[name].pid)

    def stop(self) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        end = time.monotonic() + STOP_GRACE
        for child in self.children.values():
            try:
                child.wait(timeout=max(end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def wait_for_api(self, within: float = 60.0) -> bool:
        url = f"http://{self.settings.api_host}:{self.settings.api_port}/"
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.dead() is not None:
                return False
            try:
                if requests.get(url, timeout=1).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def dead(self) -> str | None:
        for name, child in self.children.items():
            if child.poll() is not None:
                return name
        return None


def serve() -> int:
    """Run everything until a signal or a child's death; return the exit code."""
    settings = settings_module.load()
    settings.home.mkdir(parents=True, exist_ok=True)
    Database(settings.database_url).upgrade()
    supervisor = Supervisor(settings)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    supervisor.start()
    try:
        if not supervisor.wait_for_api():
            print("cellar: the API did not start; see the log lines above", file=sys.stderr)
            return 1
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"\nCellar is up at {base}/v1.0/<project_id>  (metadata: {settings.database_url})\n"
            "Try:  cellar instance create mydb --flavor 2 --size 1 --database app "
            "--user app:S3cret-pass --wait\n"
            "Stop with Ctrl-C.\n",
            flush=True,
        )
        while True:
            name = supervisor.dead()
            if name is not None:
                print(f"cellar: {name} exited; stopping everything", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("cellar: stopping", file=sys.stderr)
        return 0
    finally:
        supervisor.stop()
