"""Replica sets under change: switchover unavailability, failover time, replica delay.

Usage: python benchmarks/failover.py [--runs 5] [--datastore postgresql|mariadb|redis]
                                     [--mode async|sync] [--url URL]

Without ``--url`` it starts a private Cellar (``cellar serve``) in a temporary home. Each
run makes a primary with two replicas and, with a client writing a counter every 10 ms
through the set's rw endpoint:

1. measures how long a row written on the primary takes to be readable on a replica;
2. asks for a switchover and measures the longest time no write was acknowledged;
3. kills the (new) primary's container and measures the time from the kill to the first
   acknowledged write through the rw endpoint (Cellar's detection, fencing and promotion);
4. as the raw baseline, promotes the remaining replica by hand with the engine's own
   command inside its container and measures the time until a write on it succeeds: what
   a failover costs with no detection and no control plane;

and counts acknowledged writes missing afterwards. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import requests

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_VERSIONS, given, private_cellar, progress, summary, wait
from benchmarks.writer import CounterWriter, Login, connect, prepare_counter, stored, write_one

PASSWORD = secrets.token_urlsafe(12)  # the benchmark user's, new each run
VISIBILITY_SAMPLES = 20
# The engine's own promotion, run inside the replica's container (the raw baseline).
RAW_PROMOTE = {
    "postgresql": ["su", "postgres", "-c",
                   "psql -h /run/postgresql -d postgres -qAtc 'SELECT pg_promote()'"],
    "mariadb": ["mariadb", "--socket=/run/mysqld/mysqld.sock", "-uroot", "-e",
                "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0"],
    "redis": ["sh", "-c", "redis-cli -s /run/redis/redis.sock --user cellar --no-auth-warning "
              "--pass \"$(cat /var/lib/cellar/data/.cellar-admin-password)\" REPLICAOF NO ONE"],
}  # fmt: skip


class Set:
    """One replica set made through the API, and the calls the benchmark needs."""

    def __init__(self, base: str, token: str, datastore: str, version: str, mode: str) -> None:
        self.base, self.datastore = base, datastore
        self.http = requests.Session()
        self.http.headers["X-Auth-Token"] = token
        body: dict[str, Any] = {
            "name": "bench-primary", "flavorRef": "2", "volume": {"size": 1},
            "datastore": {"type": datastore, "version": version},
            "users": [{"name": "app", "password": PASSWORD}],
        }  # fmt: skip
        if datastore != "redis":
            body["databases"] = [{"name": "shop"}]
            body["users"][0]["databases"] = [{"name": "shop"}]
        self.primary = self.create(body)
        with contextlib.closing(connect(self.login(self.view(self.primary)["connection"]))) as c:
            prepare_counter(c)
        replica: dict[str, Any] = {"name": "bench-replica", "replica_of": self.primary,
                                   "replica_count": 2}  # fmt: skip
        if mode == "sync":
            replica["replication"] = {"mode": "sync"}
        self.post("/instances", {"instance": replica})
        self.replicas = [r["id"] for r in self.view(self.primary)["replicas"]]
        for replica_id in self.replicas:
            self.wait_active(replica_id)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = self.http.post(self.base + path, json=body, timeout=30)
        if reply.status_code >= 400:
            raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text}")
        return reply.json() if reply.content else None

    def view(self, instance_id: str) -> dict[str, Any]:
        reply = self.http.get(f"{self.base}/instances/{instance_id}", timeout=30)
        return dict(reply.json()["instance"]) if reply.ok else {"status": "GONE"}

    def create(self, body: dict[str, Any]) -> str:
        instance_id = str(self.post("/instances", {"instance": body})["instance"]["id"])
        self.wait_active(instance_id)
        return instance_id

    def wait_active(self, instance_id: str, within: float = 300) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def ready() -> bool:
            found.clear()
            found.update(self.view(instance_id))
            if found["status"] == "ERROR":
                raise RuntimeError(f"instance {instance_id}: {found.get('fault')}")
            return found["status"] == "ACTIVE" and not found.get("task")

        wait(ready, within, f"instance {instance_id}", every=0.1)
        return found

    def login(self, where: dict[str, Any]) -> Login:
        database = "" if self.datastore == "redis" else "shop"
        return Login(self.datastore, where["host"], where["port"], "app", PASSWORD, database)

    def events(self, instance_id: str) -> list[dict[str, Any]]:
        path = f"{self.base}/instances/{instance_id}/replication_events"
        return list(self.http.get(path, timeout=30).json()["replication_events"])

    def delete_all(self) -> None:
        """Replicas first (a primary with replicas cannot be deleted), then the rest."""
        ids = [self.primary, *self.replicas]
        heads = [i for i in ids if self.view(i).get("replicas")]
        for group in ([i for i in ids if i not in heads], heads):
            for instance_id in group:
                self.http.delete(f"{self.base}/instances/{instance_id}", timeout=30)
            for instance_id in group:
                wait(functools.partial(self.gone, instance_id), 180, f"deletion of {instance_id}")

    def gone(self, instance_id: str) -> bool:
        return self.view(instance_id)["status"] == "GONE"


def holds(conn: Any, value: int) -> bool:
    return value in stored(conn)


def replica_delay(bench: Set) -> list[float]:
    """Seconds until each of a few writes on the primary is readable on a replica."""
    samples = []
    where = bench.view(bench.replicas[0])["connection"]
    primary = bench.view(bench.primary)["connection"]
    with (
        contextlib.closing(connect(bench.login(primary))) as writer,
        contextlib.closing(connect(bench.login(where))) as reader,
    ):
        for number in range(VISIBILITY_SAMPLES):
            value = 10**12 + number
            write_one(writer, value)
            written = time.monotonic()
            wait(functools.partial(holds, reader, value), 30, "a row on the replica", every=0.005)
            samples.append(time.monotonic() - written)
            time.sleep(0.05)
    return samples


def switchover(bench: Set, writer: CounterWriter) -> tuple[float, str]:
    """Promote the first replica; the longest time writes were refused, and the new primary."""
    candidate = bench.replicas[0]
    started = time.monotonic()
    bench.post(f"/instances/{candidate}/action", {"promote_to_replica_source": {}})
    bench.wait_active(candidate, 120)
    for instance_id in (bench.primary, *bench.replicas):
        bench.wait_active(instance_id, 120)
    time.sleep(1.0)  # writes after the change, so the window is closed
    return writer.longest_gap(started), candidate


def failover(bench: Set, writer: CounterWriter, head: str) -> tuple[float, dict[str, Any]]:
    """Kill the primary's container; seconds from the kill to the next acknowledged write."""
    docker.from_env().containers.get(f"cellar-{head}").kill()
    killed = time.monotonic()
    wait(lambda: writer.back_after(killed) is not None, 120, "a write after the kill")
    took = (writer.back_after(killed) or killed) - killed
    event: dict[str, Any] = {}

    def ended() -> bool:
        found = bench.events(head)
        if found and found[0]["state"] != "RUNNING":
            event.update(found[0])
            return True
        return False

    wait(ended, 120, "the failover event")
    return took, event


def raw_promote(bench: Set, survivor: str) -> float:
    """The engine's own promotion by hand, to a write on the promoted server."""
    container = docker.from_env().containers.get(f"cellar-{survivor}")
    where = bench.view(survivor)["connection"]
    started = time.monotonic()
    code, output = container.exec_run(RAW_PROMOTE[bench.datastore])
    if code != 0:
        raise RuntimeError(f"raw promotion failed: {output.decode(errors='replace')[:300]}")

    def writable() -> bool:
        try:
            with contextlib.closing(connect(bench.login(where))) as conn:
                write_one(conn, -int(time.monotonic() * 1000))
            return True
        except Exception:  # noqa: BLE001  (read-only until promoted)
            return False

    wait(writable, 60, "a write on the promoted replica", every=0.01)
    return time.monotonic() - started


def one_run(base: str, token: str, datastore: str, version: str, mode: str) -> dict[str, Any]:
    bench = Set(base, token, datastore, version, mode)
    try:
        delays = replica_delay(bench)
        rw = bench.view(bench.primary)["endpoints"]["rw"]
        writer = CounterWriter(bench.login(rw)).start()
        wait(lambda: len(writer.acked) > 50, 30, "writes through the rw endpoint")
        gap, head = switchover(bench, writer)
        took, event = failover(bench, writer, head)
        time.sleep(0.5)
        writer.stop()
        new_head = event.get("new_primary")
        survivor = next(i for i in (bench.primary, *bench.replicas) if i not in (head, new_head))
        bench.wait_active(str(new_head), 120)
        where = bench.view(str(new_head))["connection"]
        with contextlib.closing(connect(bench.login(where))) as conn:
            missing = writer.acked_numbers() - stored(conn)
        raw = raw_promote(bench, survivor)
        return {
            "replica_delay_s": delays,
            "switchover_unavailable_s": gap,
            "failover_s": took,
            "raw_promote_s": raw,
            "acked_writes": len(writer.acked),
            "acked_writes_missing": len(missing),
            "event": {k: event.get(k) for k in ("kind", "state", "seconds", "behind_bytes")},
        }
    finally:
        bench.delete_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--datastore", default="postgresql", choices=sorted(DEFAULT_VERSIONS))
    parser.add_argument("--mode", default="async", choices=("async", "sync"))
    parser.add_argument("--url", help="an already running Cellar (default: start one)")
    parser.add_argument("--project", default=f"bench-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    if args.mode == "sync" and args.datastore != "postgresql":
        parser.error("--mode sync is offered for postgresql only")
    version = DEFAULT_VERSIONS[args.datastore]
    runs: list[dict[str, Any]] = []
    with given(args.url) if args.url else private_cellar(args.project) as served:
        base = served.base
        for number in range(args.runs):
            progress(f"{args.datastore} run {number + 1} of {args.runs}")
            runs.append(one_run(base, served.token, args.datastore, version, args.mode))
            progress(f"failover {runs[-1]['failover_s']:.2f} s, switchover gap "
                     f"{runs[-1]['switchover_unavailable_s']:.2f} s")  # fmt: skip
    failovers = [r["failover_s"] for r in runs]
    raws = [r["raw_promote_s"] for r in runs]
    result = {
        "benchmark": "failover",
        "datastore": args.datastore,
        "version": version,
        "mode": args.mode,
        "runs": args.runs,
        "failover_kill_to_write": summary(failovers),
        "raw_promote_to_write": summary(raws),
        "ratio_median": round(statistics.median(failovers) / statistics.median(raws), 2),
        "switchover_unavailable": summary([r["switchover_unavailable_s"] for r in runs]),
        "replica_delay": summary([d for r in runs for d in r["replica_delay_s"]]),
        "acked_writes": sum(r["acked_writes"] for r in runs),
        "acked_writes_missing": sum(r["acked_writes_missing"] for r in runs),
        "events": [r["event"] for r in runs],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
