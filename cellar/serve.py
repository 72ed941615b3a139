"""``cellar serve``: the API, a Celery worker and beat on one machine, in the foreground.

Each of the three that dies is started again after a back-off (``cellar.supervisor``);
Ctrl-C or SIGTERM stops all of them.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import requests

from cellar import settings as settings_module
from cellar.db import Database
from cellar.identity.bootstrap import bootstrap, openrc_path
from cellar.settings import Settings
from cellar.supervisor import Supervisor

logger = logging.getLogger(__name__)

API_START_WITHIN = 60.0  # seconds for the API to answer after its first start


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


def banner(settings: Settings, base: str) -> str:
    """What ``cellar serve`` says once the API answers: where, how to log in, what to try."""
    if settings.own_identity:
        login = (
            f"Identity:  {settings.identity_url}; the admin's credentials are in\n"
            f"           {openrc_path(settings)}  (source it: the openstack and cellar CLIs "
            "log in with it)\n"
        )
    else:
        login = f"Identity:  tokens are validated by the Keystone at {settings.auth_url}\n"
    return (
        f"\nCellar is up at {base}/v1.0/<project_id>  (metadata: {settings.database_url})\n"
        + login
        + "Try:  source "
        + str(openrc_path(settings))
        + " && cellar instance create mydb --flavor 2 --size 1 --database app "
        "--user app:S3cret-pass --wait\n"
        "Stop with Ctrl-C.\n"
    )


def wait_for_api(supervisor: Supervisor, url: str, within: float = API_START_WITHIN) -> bool:
    """Whether the API answers ``url`` within ``within`` seconds of ``supervisor.start()``.

    False at once if the API exits or a stop is requested. Use it before
    ``keep_running()``: an API that cannot start is not started again, and a worker or
    beat that dies meanwhile is started again once the wait is over.
    """
    end = time.monotonic() + within
    while time.monotonic() < end:
        if supervisor.stop_requested or supervisor.pid("api") is None:
            return False
        try:
            if requests.get(url, timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def serve() -> int:
    """Run everything until SIGTERM or Ctrl-C; return the exit code."""
    settings = settings_module.load()
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.upgrade()
    if settings.own_identity:
        bootstrap(settings, database)
    database.engine.dispose()
    supervisor = Supervisor(commands(settings), env=child_environment(dict(os.environ)))
    supervisor.stop_on_signals()
    base = f"http://{settings.api_host}:{settings.api_port}"
    supervisor.start()
    try:
        if wait_for_api(supervisor, f"{base}/"):
            print(banner(settings, base), flush=True)
            supervisor.keep_running()
        elif not supervisor.stop_requested:
            print("cellar: the API did not start; see the log lines above", file=sys.stderr)
            return 1
        print("cellar: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        supervisor.stop()
