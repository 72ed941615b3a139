"""What authentication costs the instance reads, and how fast a page of 1,000 instances is.

Usage: python benchmarks/api.py [--list-requests 200] [--show-requests 1000]
       [--rows 1000] [--server gunicorn|werkzeug] [--database-url URL] [--max-seconds 300]
       [--no-gc-freeze]

It fills a metadata database (SQLite in a temporary directory unless ``--database-url``
names a scratch PostgreSQL database) with ``--rows`` instances of one project, made in
bulk and varied as a real project is: three datastores, replica sets with endpoints,
configuration groups, backups and archives (a recovery window), running and finished
tasks, faults. It serves the real API twice on loopback, once checking tokens and once
with ``Auth(enabled=False)`` (the baseline), and asks both with a keep-alive HTTP
session, interleaved so that noise hits both:
``GET /v1.0/<project>/instances?limit=1000`` (one page of every row) and
``GET /v1.0/<project>/instances/<id>`` (over varied instances). The page is measured
twice: as the rows stand (``list``), and with ``--churn`` instances changed before each
request (``list_changing``: their usage, one's health and its running step, written by
this process as the worker's health checks and steps write them), which the API must
read again and show.

``--server gunicorn`` (the default) runs gunicorn's gthread worker, as ``cellar serve``
does (one worker here, so one process serves each connection and its token cache);
``--server werkzeug`` serves both apps in this process, with werkzeug's threaded server,
which closes every connection after its answer. As ``api.app:main()`` does, the API
process moves what it holds once started out of the garbage collector's reach
(``gc.freeze()``); ``--no-gc-freeze`` leaves that out, to show what it gains. Prints
one JSON object: p50, p99 and spread of each, the ratio of authenticated to baseline,
and ``/`` as the floor of HTTP and Flask alone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import auth, state
from api.app import create_app
from benchmarks.common import free_port, progress, wait
from benchmarks.instance_rows import Churn, empty, fill
from cellar import logs
from cellar import settings as settings_module
from cellar.db import Database
from cellar.identity.tokens import TokenSealer

REPO = Path(__file__).resolve().parents[1]
TARGET_AUTH_OVERHEAD = 0.20  # authentication adds at most 20 % to p50
TARGET_LIST_P99_MS = 50.0  # a page of 1,000 instances
WARM_UP = 10  # requests of each kind before measuring
TIMEOUT = 30.0
SERVERS = {
    "gunicorn": "gunicorn gthread, 1 worker, 8 threads, keep-alive",
    "werkzeug": "werkzeug threaded, in this process, a connection per request",
}


def _environment(home: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLAR_")}
    env["CELLAR_HOME"] = str(home)
    if database_url:
        env["CELLAR_DATABASE_URL"] = database_url
    return env


# -- the servers ---------------------------------------------------------------------------


def served(checked: bool, freeze: bool = True, log: bool = True) -> Any:
    """The API app, checking tokens or not: gunicorn's entry point for this benchmark
    (``benchmarks.api:served(True, False)``), with the settings of the environment.

    ``log``: a JSON line for every request, as ``api.app:main()`` logs. ``freeze``:
    ``gc.freeze()`` once the app is built, as ``api.app:main()`` does."""
    if log:
        logs.setup("api")
    settings = settings_module.load()
    svc = state.build(settings)
    checks = auth.auth_for(settings, svc.db)
    app = create_app(svc, checks if checked else dataclasses.replace(checks, enabled=False))
    if freeze:
        gc.collect()
        gc.freeze()
    return app


@contextlib.contextmanager
def gunicorn(home: Path, env: dict[str, str], checked: bool, freeze: bool) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread", "--workers", "1", "--threads", "8",
        "--log-level", "warning", "--chdir", str(REPO),
        f"benchmarks.api:served({checked}, {freeze})",
    ]  # fmt: skip
    with open(home / f"api-{'auth' if checked else 'noauth'}.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait(lambda: _answers(url) or server.poll() is not None, 60, f"gunicorn on {port}")
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited {server.returncode}; see {log.name}")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def werkzeug(checked: bool, freeze: bool) -> Iterator[str]:
    class Quiet(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    app = served(checked, freeze, log=False)  # its lines would go where the figures go
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=1).ok
    except requests.RequestException:
        return False


# -- measuring -----------------------------------------------------------------------------


def percentile(samples: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest sample with ``share`` of them at or below."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def figures(samples: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples]
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "stdev_ms": round(statistics.stdev(ms), 2) if len(ms) > 1 else 0.0,
    }


def timed(http: requests.Session, url: str) -> tuple[float, requests.Response]:
    started = time.perf_counter()
    reply = http.get(url, timeout=TIMEOUT)
    took = time.perf_counter() - started
    if reply.status_code != 200:
        raise RuntimeError(f"GET {url} answered {reply.status_code}: {reply.text[:300]}")
    return took, reply


def compare(
    kind: str,
    paths: Callable[[int], str],
    count: int,
    clients: dict[str, tuple[requests.Session, str]],
    within: float,
    before: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """``count`` requests of each mode (fewer if ``within`` seconds run out, one at
    least), the order of the modes drawn anew for each round; ``before`` runs, untimed,
    before each request."""
    samples: dict[str, list[float]] = {mode: [] for mode in clients}
    for n in range(WARM_UP):
        for _mode, (http, url) in clients.items():
            timed(http, url + paths(n))
    order = list(clients)
    deadline = time.monotonic() + within
    for n in range(count):
        if n and time.monotonic() > deadline:
            progress(f"{kind}: out of time after {n} requests of each mode")
            break
        random.shuffle(order)
        for mode in order:
            http, url = clients[mode]
            before()
            took, _reply = timed(http, url + paths(n))
            samples[mode].append(took)
    result: dict[str, Any] = {mode: figures(found) for mode, found in samples.items()}
    checked, baseline = result["auth"], result["noauth"]
    result["ratio_p50"] = round(checked["p50_ms"] / baseline["p50_ms"], 3)
    result["ratio_p99"] = round(checked["p99_ms"] / baseline["p99_ms"], 3)
    return result


def uncached_validation(token: str, count: int = 200) -> dict[str, Any]:
    """What opening and resolving one token costs in this process, with no cache."""
    settings = settings_module.load()
    db = Database(settings.database_url)
    validator = auth.LocalValidator(db, TokenSealer.from_home(settings.home))
    samples = []
    for _ in range(count + WARM_UP):
        started = time.perf_counter()
        validator.validate(token)
        samples.append(time.perf_counter() - started)
    db.engine.dispose()
    found = figures(samples[WARM_UP:])
    return {k: found[k] for k in ("requests", "p50_ms", "p99_ms")}


def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = _environment(home, args.database_url)
    os.environ.clear()
    os.environ.update(env)
    progress(f"making {args.rows} instances")
    made = fill(args.rows)
    servers: dict[str, Any] = {
        "gunicorn": lambda checked: gunicorn(home, env, checked, args.gc_freeze),
        "werkzeug": lambda checked: werkzeug(checked, args.gc_freeze),
    }
    start = servers[args.server]
    try:
        with start(True) as checked_url, start(False) as open_url:
            clients: dict[str, tuple[requests.Session, str]] = {}
            for mode, url in (("auth", checked_url), ("noauth", open_url)):
                http = requests.Session()
                if mode == "auth":
                    http.headers["X-Auth-Token"] = made.token
                clients[mode] = (http, url)
            base = f"/v1.0/{made.project_id}/instances"
            page = f"{base}?limit={args.rows}"
            bodies = [
                json.loads(timed(http, url + page)[1].text.replace(url, "<api>"))
                for http, url in clients.values()
            ]
            if bodies[0] != bodies[1] or len(bodies[0]["instances"]) != args.rows:
                raise RuntimeError("the two servers answer the page differently")
            progress(f"{args.list_requests} pages of {args.rows} instances, each mode")
            listed = compare("list", lambda _n: page, args.list_requests, clients, args.max_seconds)
            progress(f"again, {args.churn} instances changed before each page")
            churn = Churn(made.instance_ids, args.churn)
            try:
                changing = compare(
                    "list", lambda _n: page, args.list_requests, clients, args.max_seconds, churn
                )
            finally:
                churn.close()
            ids = made.instance_ids
            progress(f"{args.show_requests} instances shown, each mode")
            shown = compare(
                "show",
                lambda n: f"{base}/{ids[n % len(ids)]}",
                args.show_requests,
                clients,
                args.max_seconds,
            )
            floor = compare("versions", lambda _n: "/", 200, clients, args.max_seconds)
        validation = uncached_validation(made.token)
    finally:
        if args.database_url:
            empty(made.project_id)
    met = {
        "list_auth_overhead_p50": listed["ratio_p50"] <= 1 + TARGET_AUTH_OVERHEAD,
        "show_auth_overhead_p50": shown["ratio_p50"] <= 1 + TARGET_AUTH_OVERHEAD,
        "list_p99": listed["auth"]["p99_ms"] <= TARGET_LIST_P99_MS,
        "list_changing_p99": changing["auth"]["p99_ms"] <= TARGET_LIST_P99_MS,
    }
    return {
        "rows": args.rows,
        "database": args.database_url.split(":", 1)[0] if args.database_url else "sqlite",
        "server": SERVERS[args.server],
        "gc_freeze": args.gc_freeze,
        "list": {"path": f"/v1.0/<project>/instances?limit={args.rows}", **listed},
        "list_changing": {"instances_changed_before_each": args.churn, **changing},
        "show": {"path": "/v1.0/<project>/instances/<id>", **shown},
        "versions_floor": {"path": "/", **floor},
        "token_validation_uncached": validation,
        "targets": {
            "auth_overhead_p50_max": TARGET_AUTH_OVERHEAD,
            "list_p99_ms_max": TARGET_LIST_P99_MS,
        },
        "met": {**met, "all": all(met.values())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--list-requests", type=int, default=200)
    parser.add_argument("--show-requests", type=int, default=1000)
    parser.add_argument(
        "--churn", type=int, default=10, help="instances changed before each page of list_changing"
    )
    parser.add_argument("--server", choices=("gunicorn", "werkzeug"), default="gunicorn")
    parser.add_argument("--database-url", default="", help="a scratch PostgreSQL database")
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="an experiment: the API process leaves out the gc.freeze() that "
        "api.app:main() does once its app is built",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="for each of list, show and /"
    )
    args = parser.parse_args()
    if not 1 <= args.rows <= 1000:
        parser.error("--rows is 1 to 1000: one page holds at most 1000 instances")
    with tempfile.TemporaryDirectory(prefix="cellar-bench-api-") as home:
        result = measure(args, Path(home))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
