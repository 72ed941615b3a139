"""``cellar serve``: the API, a Celery worker and beat on one machine, in the foreground.

Each of the three that dies is started again after a back-off (``cellar.supervisor``);
Ctrl-C or SIGTERM stops all of them.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

import requests

from cellar import pki
from cellar import settings as settings_module
from cellar.db import Database
from cellar.identity.bootstrap import bootstrap, openrc_path, refresh_openrc
from cellar.scrape_token import scrape_token, token_path
from cellar.settings import Settings
from cellar.supervisor import Supervisor

logger = logging.getLogger(__name__)

API_START_WITHIN = 60.0  # seconds for the API to answer after its first start
METRICS_DIR = "prometheus"  # in CELLAR_HOME: what each API worker observed, for /metrics


def commands(settings: Settings) -> dict[str, list[str]]:
    python = sys.executable
    tls = settings.api_tls_files
    certificate = ["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls else []
    metrics = f"PROMETHEUS_MULTIPROC_DIR={settings.home / METRICS_DIR}"
    return {
        "api": [
            python, "-m", "gunicorn",
            "--bind", f"{settings.api_host}:{settings.api_port}",
            "--worker-class", "gthread", "--workers", "2", "--threads", "8",
            "--log-level", "warning", "--graceful-timeout", "10",
            "--env", metrics,
            *certificate,
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


def empty_metrics_dir(settings: Settings) -> Path:
    """The folder where the API's workers write what they observe (``api.prometheus``),
    emptied: counts of an earlier run, from processes long gone, are not added again."""
    folder = settings.home / METRICS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for path in folder.iterdir():
        if path.is_file() or path.is_symlink():
            path.unlink()
    return folder


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
    where = "CELLAR_METRICS_TOKEN" if settings.metrics_token else str(token_path(settings))
    return (
        f"\nCellar is up at {base}/v1.0/<project_id>  (metadata: {settings.database_url})\n"
        + login
        + f"Metrics:   {base}/metrics, for Prometheus with the bearer token in {where}\n"
        + "Try:  source "
        + str(openrc_path(settings))
        + " && cellar instance create mydb --flavor 2 --size 1 --database app "
        "--user app:S3cret-pass --wait\n"
        "Stop with Ctrl-C.\n"
    )


def api_verify(settings: Settings) -> str | bool:
    """What a client of this API trusts: Cellar's CA for its own certificate, the
    operator's CA (``CELLAR_TLS_CA``) or the system's for a certificate given."""
    if settings.tls_auto:
        return str(pki.ca_path(settings.home))
    return os.environ.get("CELLAR_TLS_CA", "").strip() or True


def api_names(settings: Settings) -> list[str]:
    """The names and addresses the API's own certificate holds."""
    names = ["localhost", "127.0.0.1", socket.gethostname(), settings.advertise_host]
    if settings.api_host not in ("0.0.0.0", "::"):  # noqa: S104
        names.append(settings.api_host)
    return list(dict.fromkeys(n for n in names if n))


def wait_for_api(
    supervisor: Supervisor, url: str, within: float = API_START_WITHIN, verify: str | bool = True
) -> bool:
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
            if requests.get(url, timeout=1, verify=verify).ok:
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
    if settings.own_identity and not bootstrap(settings, database):
        refresh_openrc(settings)
    database.engine.dispose()
    empty_metrics_dir(settings)
    scrape_token(settings)  # made now, so that it is there to give Prometheus
    authority = pki.Authority.from_home(settings.home)  # made here once, before the children
    if settings.tls_auto:
        cert, key = settings.api_tls_files or (Path(), Path())
        pki.ensure_api_files(authority, cert, key, api_names(settings))
    supervisor = Supervisor(commands(settings), env=child_environment(dict(os.environ)))
    supervisor.stop_on_signals()
    base = f"{settings.api_scheme}://{settings.api_host}:{settings.api_port}"
    supervisor.start()
    try:
        if wait_for_api(supervisor, f"{base}/", verify=api_verify(settings)):
            print(banner(settings, base), flush=True)
            supervisor.keep_running()
        elif not supervisor.stop_requested:
            print("cellar: the API did not start; see the log lines above", file=sys.stderr)
            return 1
        print("cellar: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        supervisor.stop()
