"""Time from POST /instances to ACTIVE, against the bare image's initdb-and-start.

Usage: python benchmarks/provision.py [--runs 5] [--datastore postgresql|mariadb|redis]
                                     [--flavor 2] [--url URL]

Without ``--url`` it starts a private Cellar (``cellar serve``) in a temporary
home on a free port. Each run of Cellar is paired with a run of the raw baseline:
``docker run`` of the same engine image doing initdb and start, until the engine
accepts a connection, with the flavor's memory and CPU limits as Cellar's container has
them, so both sides run on the same resources. Prints one JSON object with medians,
spreads and the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import psycopg
import requests

from cellar.catalog import FLAVORS, Flavor
from taskmanager.drivers.docker import CPU_PERIOD, cpu_quota

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    DEFAULT_VERSIONS,
    POLL,
    given,
    private_cellar,
    summary,
    wait,
)


def cellar_run(base: str, token: str, datastore: str, version: str, flavor: Flavor) -> float:
    body = {
        "instance": {
            "name": "bench",
            "flavorRef": flavor.id,
            "volume": {"size": 1},
            "datastore": {"type": datastore, "version": version},
        }
    }
    session = requests.Session()
    session.headers["X-Auth-Token"] = token
    started = time.monotonic()
    reply = session.post(f"{base}/instances", json=body, timeout=30)
    reply.raise_for_status()
    instance_id = reply.json()["instance"]["id"]
    try:
        while True:
            view = session.get(f"{base}/instances/{instance_id}", timeout=30).json()["instance"]
            if view["status"] == "ACTIVE":
                return time.monotonic() - started
            if view["status"] == "ERROR":
                raise RuntimeError(f"instance failed: {view.get('fault')}")
            if time.monotonic() - started > 300:
                raise TimeoutError("instance not ACTIVE after 300 s")
            time.sleep(POLL)
    finally:
        session.delete(f"{base}/instances/{instance_id}", timeout=30)
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if session.get(f"{base}/instances/{instance_id}", timeout=30).status_code == 404:
                break
            time.sleep(0.2)


def connects_postgresql(port: int) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=1
        ):
            return True
    except psycopg.OperationalError:
        return False


def connects_mariadb(port: int) -> bool:
    import pymysql

    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=1).close()
        return True
    except pymysql.err.MySQLError:
        return False


def connects_redis(port: int) -> bool:
    import redis

    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


RAW = {
    "postgresql": (5432, connects_postgresql),
    "mariadb": (3306, connects_mariadb),
    "redis": (6379, connects_redis),
}


def raw_run(client: docker.DockerClient, image: str, datastore: str, flavor: Flavor) -> float:
    """``docker run`` of the engine image's bare start script, until a client gets in."""
    engine_port, connects = RAW[datastore]
    started = time.monotonic()
    container = client.containers.run(
        image,
        entrypoint=f"/usr/local/bin/cellar-raw-{datastore}",
        detach=True,
        mem_limit=f"{flavor.ram_mb}m",
        memswap_limit=f"{flavor.ram_mb}m",
        cpu_period=CPU_PERIOD,
        cpu_quota=cpu_quota(flavor.vcpus),
        ports={f"{engine_port}/tcp": ("127.0.0.1", None)},
        name=f"cellar-bench-raw-{uuid.uuid4().hex[:8]}",
    )
    try:
        port = 0
        while not port:
            container.reload()
            bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{engine_port}/tcp")
            port = int(bindings[0]["HostPort"]) if bindings else 0
            if not port:
                time.sleep(0.01)
        wait(lambda: connects(port), 120, "the raw engine")
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def tls_setup_runs(runs: int) -> list[float]:
    """Seconds the worker spends giving one new instance its certificates and TLS policy
    (``certificates.ensure``: the agent's and the engine's keys and certificates), the part
    of provisioning that TLS adds on the control plane's side."""
    from cellar import pki
    from cellar import settings as settings_module
    from taskmanager import certificates

    found: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cellar-bench-tls-") as home:
        settings = dataclasses.replace(settings_module.load(), home=Path(home))
        authority = pki.Authority.from_home(Path(home))
        for _ in range(runs):
            began = time.monotonic()
            certificates.ensure(authority, settings, str(uuid.uuid4()), False)
            found.append(time.monotonic() - began)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--datastore", default="postgresql", choices=sorted(RAW))
    parser.add_argument("--version", help="default: the datastore's default version")
    parser.add_argument("--flavor", default="2", choices=sorted(FLAVORS))
    parser.add_argument("--url", help="an already running Cellar (default: start one)")
    parser.add_argument("--project", default=f"bench-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    args.version = args.version or DEFAULT_VERSIONS[args.datastore]
    flavor = FLAVORS[args.flavor]
    client = docker.from_env()
    image = f"cellar/{args.datastore}:{args.version}"
    cellar: list[float] = []
    raw: list[float] = []
    with given(args.url) if args.url else private_cellar(args.project) as served:
        base = served.base
        raw_run(client, image, args.datastore, flavor)  # warm the page cache for both sides
        for _ in range(args.runs):
            cellar.append(cellar_run(base, served.token, args.datastore, args.version, flavor))
            raw.append(raw_run(client, image, args.datastore, flavor))
    tls = tls_setup_runs(max(args.runs, 5))
    result = {
        "benchmark": "provision",
        "datastore": args.datastore,
        "version": args.version,
        "runs": args.runs,
        "flavor": {"id": flavor.id, "ram_mb": flavor.ram_mb, "vcpus": flavor.vcpus},
        "raw_limits": "the flavor's memory and CPU limits, as Cellar's container has them",
        "cellar_post_to_active": summary(cellar),
        "raw_docker_run_to_connect": summary(raw),
        "ratio_median": round(statistics.median(cellar) / statistics.median(raw), 2),
        "tls": {
            "what": "the raw baseline serves no TLS; Cellar's instance serves TLS on its engine "
            "port and mutual TLS on its agent's; this is the worker's certificate work per "
            "instance, inside cellar_post_to_active",
            "certificates_ensure": summary(tls),
            "share_of_cellar_median": round(statistics.median(tls) / statistics.median(cellar), 4),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
