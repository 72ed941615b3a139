"""Backup and restore throughput through Cellar, against the engine's own tool run by hand.

Usage: python benchmarks/backup.py [--datastore postgresql|mariadb|redis ...]
                                   [--size-mb 1024] [--runs 3] [--url URL]

For each datastore it creates an instance (flavor 4, a 4 GB volume) through the API,
fills it with about ``--size-mb`` MB of data that does not compress, then per run:

* takes a backup through ``POST /backups`` and times it until COMPLETED, sampling
  every 50 ms the resident memory of the Celery worker (the private ``cellar serve``'s
  worker and its children), of the guest agent process (not the engine's processes)
  and of the container's memory cgroup, and counting the CPU seconds each side used;
* runs the engine's own backup tool inside the same container, writing to a local
  file, as the agent runs it (``pg_basebackup -F tar -X fetch``, ``mariabackup
  --stream=xbstream``, Redis ``BGSAVE`` and a copy of the RDB), timed inside the
  container, with and without an ``fsync`` of the file (Cellar's storage fsyncs).

Then it restores the last backup into a new instance (``restorePoint``), timed until
ACTIVE. Everything it made is deleted at the end, also on failure. Without ``--url`` it
starts a private Cellar in a temporary home. One JSON object goes to stdout; progress
goes to stderr. MB means 2**20 bytes.
"""

from __future__ import annotations

import abc
import argparse
import functools
import json
import os
import random
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pymysql
import redis
import requests

from cellar.catalog import FLAVORS, Flavor
from guestagent.engines.redis_config import maxmemory_bytes

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    DEFAULT_VERSIONS,
    Server,
    children,
    cmdline,
    given,
    private_cellar,
    progress,
    wait,
    workers_of,
)

MB = 1024 * 1024
SAMPLE_EVERY = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DATA_PATH = "/var/lib/cellar/data"
RAW_FILE = "/tmp/cellar-raw-backup"  # noqa: S108 - inside the instance's container
BACKUP_DEADLINE = 1800.0
ACTIVE_DEADLINE = 1800.0
REDIS_SHARE_OF_MAXMEMORY = 0.78  # values plus Redis's per-key overhead stay under maxmemory
TARGET_RATIO = 0.8
TARGET_PEAK_MB = 150.0
TARGET_ENCRYPTED_RATIO = 0.9  # encrypted backups against unencrypted ones, same run

# Times a command inside the container: start, tool done, file fsynced (ns), file size.
TIMED = (
    "set -e; f={file}; rm -f $f; t0=$(date +%s%N); {command} > $f; t1=$(date +%s%N); "
    "sync $f; t2=$(date +%s%N); echo $t0 $t1 $t2 $(stat -c %s $f); rm -f $f"
)


# -- the API ---------------------------------------------------------------------------


class Api:
    """The few calls of Cellar's v1.0 API this benchmark makes; remembers what it made."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["X-Auth-Token"] = token
        self.instances: list[str] = []
        self.backups: list[str] = []

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.http.request(method, self.base + path, timeout=60, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json() if reply.content else None

    def create_instance(self, body: dict[str, Any]) -> str:
        instance_id = str(
            self._json("POST", "/instances", json={"instance": body})["instance"]["id"]
        )
        self.instances.append(instance_id)
        return instance_id

    def instance(self, instance_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/instances/{instance_id}")["instance"])

    def wait_idle(self, instance_id: str, within: float = ACTIVE_DEADLINE) -> dict[str, Any]:
        """The instance's view once it is ACTIVE with no change running."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            view = self.instance(instance_id)
            if view["status"] == "ACTIVE" and not view.get("task"):
                return view
            if view["status"] == "ERROR":
                raise RuntimeError(f"instance {instance_id} failed: {view.get('fault')}")
            time.sleep(0.1)
        raise TimeoutError(f"instance {instance_id} not ACTIVE after {within} s")

    def enable_root(self, instance_id: str) -> tuple[str, str]:
        user = self._json("POST", f"/instances/{instance_id}/root")["user"]
        self.wait_idle(instance_id, 120)
        return str(user["name"]), str(user["password"])

    def start_backup(self, instance_id: str, name: str) -> str:
        body = {"backup": {"name": name, "instance": instance_id}}
        backup_id = str(self._json("POST", "/backups", json=body)["backup"]["id"])
        self.backups.append(backup_id)
        return backup_id

    def backup(self, backup_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/backups/{backup_id}")["backup"])

    def wait_backup_ended(self, backup_id: str, within: float = BACKUP_DEADLINE) -> dict[str, Any]:
        end = time.monotonic() + within
        while time.monotonic() < end:
            view = self.backup(backup_id)
            if view["status"] in ("COMPLETED", "FAILED"):
                return view
            time.sleep(0.05)
        raise TimeoutError(f"backup {backup_id} not ended after {within} s")

    def gone(self, instance_id: str) -> bool:
        return self.http.get(f"{self.base}/instances/{instance_id}", timeout=60).status_code == 404

    def clean_up(self) -> None:
        """Delete every backup and instance made here, and wait until they are gone."""
        for backup_id in self.backups:
            try:
                self.wait_backup_ended(backup_id, 600)
                self.http.delete(f"{self.base}/backups/{backup_id}", timeout=60)
            except (requests.RequestException, RuntimeError, TimeoutError) as exc:
                progress(f"could not delete backup {backup_id}: {exc}")
        for instance_id in self.instances:
            try:
                self.http.delete(f"{self.base}/instances/{instance_id}", timeout=60)
            except requests.RequestException as exc:
                progress(f"could not delete instance {instance_id}: {exc}")
        for instance_id in self.instances:
            try:
                wait(functools.partial(self.gone, instance_id), 300, f"deletion of {instance_id}",
                     every=0.5)  # fmt: skip
            except (requests.RequestException, TimeoutError) as exc:
                progress(f"instance {instance_id} is not gone: {exc}")
        self.backups.clear()
        self.instances.clear()


# -- memory ----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS


def tree(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def worker_pids(serve_pid: int) -> list[int]:
    """The Celery worker of ``cellar serve`` and its children."""
    return [p for w in workers_of(serve_pid) for p in tree(w)]


def worker_rss_mb(serve_pid: int) -> float:
    return sum(rss_mb(p) for p in worker_pids(serve_pid))


def agent_pid(container: Any) -> int:
    """The host pid of the guest agent: the container's main process or its child."""
    container.reload()
    main = int(container.attrs["State"]["Pid"])
    for pid in tree(main):  # the first is docker-init, whose own arguments name the agent
        if Path(f"/proc/{pid}/comm").read_text().strip() != "docker-init" and (
            "guestagent" in cmdline(pid)
        ):
            return pid
    raise ProcessLookupError(f"no guest agent process in {container.name}")


class Cgroup:
    """The container's memory cgroup (v1 or v2): usage with page cache, and anonymous."""

    def __init__(self, pid: int) -> None:
        self.path: Path | None = None
        self.v2 = False
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                self.path = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            elif number == "0" and self.path is None:
                self.path, self.v2 = Path("/sys/fs/cgroup") / path.lstrip("/"), True
        if self.path is not None and not self.path.is_dir():
            self.path = None

    def usage_mb(self) -> float | None:
        if self.path is None:
            return None
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        return int((self.path / name).read_text()) / MB

    def cpu_s(self) -> float | None:
        """CPU seconds of every process of the container so far."""
        if self.path is None:
            return None
        if self.v2:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return None
        usage = Path(str(self.path).replace("/memory/", "/cpuacct/", 1)) / "cpuacct.usage"
        return int(usage.read_text()) / 1e9 if usage.exists() else None

    def anon_mb(self) -> float | None:
        if self.path is None:
            return None
        field = "anon" if self.v2 else "total_rss"
        for line in (self.path / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == field:
                return int(value) / MB
        return None


class PeakSampler:
    """Samples each probe every ``SAMPLE_EVERY`` seconds in a thread; keeps the peaks."""

    def __init__(self, probes: dict[str, Callable[[], float | None]]) -> None:
        self.probes = probes
        self.peaks: dict[str, float | None] = {name: None for name in probes}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self._sample()

    def _sample(self) -> None:
        self.samples += 1
        for name, probe in self.probes.items():
            try:
                value = probe()
            except (OSError, ValueError):  # a process ended between two reads
                continue
            peak = self.peaks[name]
            if value is not None and (peak is None or value > peak):
                self.peaks[name] = value


# -- the engines -----------------------------------------------------------------------


def exec_in(container: Any, command: str, user: str = "root") -> str:
    code, output = container.exec_run(["sh", "-c", command], user=user)
    text = output.decode("utf-8", "replace")
    if code != 0:
        raise RuntimeError(f"in {container.name}: {command[:80]}... exited {code}: {text[-500:]}")
    return text


def timed_in(container: Any, command: str, user: str = "root") -> tuple[float, float, int]:
    """Run ``command > file`` in the container: seconds to its end, to the file's fsync,
    and the file's size. The file is removed after."""
    out = exec_in(container, TIMED.format(file=RAW_FILE, command=command), user)
    t0, t1, t2, size = (int(word) for word in out.split()[-4:])
    return (t1 - t0) / 1e9, (t2 - t0) / 1e9, size


class Engine(abc.ABC):
    """How one datastore is filled and backed up by hand."""

    name = ""
    tool = ""

    def __init__(self, password: str) -> None:
        self.password = password

    def instance_body(self) -> dict[str, Any]:
        return {}

    @abc.abstractmethod
    def fill(self, api: Api, instance_id: str, container: Any, port: int, size_mb: int) -> float:
        """Write about ``size_mb`` MB; returns the MB the engine holds afterwards."""

    @abc.abstractmethod
    def raw_backup(self, container: Any) -> tuple[float, float, int]:
        """The tool's backup to a file: seconds, seconds with the fsync, bytes."""


class Postgres(Engine):
    name = "postgresql"
    tool = "pg_basebackup -F tar -X fetch --checkpoint=fast, as postgres over the socket"
    BATCH_ROWS = 100_000
    # 31 md5 hex digests: ~1 kB rows, under the TOAST threshold, so nothing compresses them
    PAYLOAD = " || ".join(f"md5((g * 31 + {i})::text)" for i in range(31))

    def instance_body(self) -> dict[str, Any]:
        return {
            "databases": [{"name": "bench"}],
            "users": [
                {"name": "bench", "password": self.password, "databases": [{"name": "bench"}]}
            ],
        }

    def fill(self, api: Api, instance_id: str, container: Any, port: int, size_mb: int) -> float:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="bench", dbname="bench", password=self.password,
            autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
            conn.execute("CREATE TABLE IF NOT EXISTS bench.filler (id bigint, payload text)")
            first, size = 0, 0.0
            while size < size_mb:
                conn.execute(
                    f"INSERT INTO bench.filler SELECT g, {self.PAYLOAD} "
                    "FROM generate_series(%s::bigint, %s::bigint) g",
                    (first, first + self.BATCH_ROWS - 1),
                )
                first += self.BATCH_ROWS
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                size = int(row[0]) / MB if row else 0.0
            return size

    def raw_backup(self, container: Any) -> tuple[float, float, int]:
        command = (
            "/usr/lib/postgresql/15/bin/pg_basebackup -h /run/postgresql -p 5432 -U postgres -w "
            "-D - -F tar -X fetch --checkpoint=fast"
        )
        return timed_in(container, command, user="postgres")


class Mariadb(Engine):
    name = "mariadb"
    tool = "mariabackup --backup --stream=xbstream, as the agent's account over the socket"
    BATCH_ROWS = 50_000
    PAYLOAD = "CONCAT(" + ", ".join(["MD5(RAND())"] * 31) + ")"
    TABLE_FILE = f"{DATA_PATH}/mysql/bench/filler.ibd"

    def instance_body(self) -> dict[str, Any]:
        return {
            "databases": [{"name": "bench"}],
            "users": [
                {"name": "bench", "password": self.password, "databases": [{"name": "bench"}]}
            ],
        }

    def fill(self, api: Api, instance_id: str, container: Any, port: int, size_mb: int) -> float:
        conn = pymysql.connect(
            host="127.0.0.1", port=port, user="bench", password=self.password,
            database="bench", autocommit=True,
        )  # fmt: skip
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "CREATE TABLE IF NOT EXISTS filler (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "payload VARCHAR(1000) NOT NULL) ENGINE=InnoDB"
                )
                size = 0.0
                while size < size_mb:
                    cursor.execute(
                        f"INSERT INTO filler (payload) SELECT {self.PAYLOAD} "
                        f"FROM seq_1_to_{self.BATCH_ROWS}"
                    )
                    size = int(exec_in(container, f"stat -c %s {self.TABLE_FILE}")) / MB
            return size
        finally:
            conn.close()

    def raw_backup(self, container: Any) -> tuple[float, float, int]:
        command = (
            "d=$(mktemp -d /tmp/cellar-raw.XXXXXX); trap 'rm -rf $d' EXIT; "
            f"/usr/bin/mariabackup --defaults-file={DATA_PATH}/cellar.cnf --backup "
            "--stream=xbstream --socket=/run/mysqld/mysqld.sock --user=root "
            "--target-dir=$d/target --extra-lsndir=$d/lsn --tmpdir=$d"
        )
        return timed_in(container, f"( {command} )")


class Redis(Engine):
    name = "redis"
    tool = "BGSAVE until done, then a copy of dump.rdb"
    BATCH_KEYS = 1000
    VALUE_BYTES = 1024

    def __init__(self, password: str) -> None:
        super().__init__(password)
        self.client: redis.Redis | None = None

    def fill(self, api: Api, instance_id: str, container: Any, port: int, size_mb: int) -> float:
        user, password = api.enable_root(instance_id)
        self.client = redis.Redis(  # Cellar's Redis port speaks TLS alone
            host="127.0.0.1", port=port, username=user, password=password,
            ssl=True, ssl_cert_reqs="none",
        )  # fmt: skip
        rng = random.Random(1)
        written, key = 0, 0
        while written < size_mb * MB:
            values = rng.randbytes(self.VALUE_BYTES * self.BATCH_KEYS)
            pipe = self.client.pipeline(transaction=False)
            for i in range(self.BATCH_KEYS):
                pipe.set(f"bench:{key}", values[i * self.VALUE_BYTES : (i + 1) * self.VALUE_BYTES])
                key += 1
            pipe.execute()
            written += self.VALUE_BYTES * self.BATCH_KEYS
        return int(self.client.info("memory")["used_memory"]) / MB

    def raw_backup(self, container: Any) -> tuple[float, float, int]:
        assert self.client is not None
        started = time.monotonic()
        saves = int(self.client.info("persistence")["rdb_saves"])
        self.client.bgsave()

        def saved() -> bool:
            assert self.client is not None
            info = self.client.info("persistence")
            return int(info["rdb_saves"]) > saves and not int(info["rdb_bgsave_in_progress"])

        wait(saved, BACKUP_DEADLINE, "BGSAVE", every=0.01)
        snapshot = time.monotonic() - started
        copy, synced, size = timed_in(container, f"cat {DATA_PATH}/redis/dump.rdb")
        return snapshot + copy, snapshot + synced, size


ENGINES: dict[str, type[Engine]] = {e.name: e for e in (Postgres, Mariadb, Redis)}


# -- one datastore ---------------------------------------------------------------------


def rates(seconds: list[float], sizes: list[int]) -> dict[str, Any]:
    values = [size / MB / s for size, s in zip(sizes, seconds, strict=True)]
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "stdev": round(statistics.stdev(values), 1) if len(values) > 1 else 0.0,
        "samples": [round(v, 1) for v in values],
    }


def rounded(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known), 1) if known else None


def plain_backup(api: Api, server: Server, instance_id: str, name: str) -> tuple[float, int]:
    """One backup through the same Cellar started again without backup encryption: its
    seconds and stored bytes (Cellar is started again as it was afterwards)."""
    server.restart({"CELLAR_BACKUP_ENCRYPTION": "off"})
    try:
        api.wait_idle(instance_id, 120)
        began = time.monotonic()
        backup_id = api.start_backup(instance_id, f"{name}-unencrypted")
        done = api.wait_backup_ended(backup_id)
        seconds = time.monotonic() - began
    finally:
        server.restart()
    if done["status"] != "COMPLETED":
        raise RuntimeError(f"backup {backup_id} {done['status']}: {done.get('fault')}")
    return seconds, int(done["size_bytes"])


def measure(
    api: Api, client: docker.DockerClient, engine: Engine, args: argparse.Namespace,
    flavor: Flavor, server: Server | None,
) -> dict[str, Any]:  # fmt: skip
    """Backups of one engine through Cellar, encrypted and (with a Cellar of our own,
    started again with ``CELLAR_BACKUP_ENCRYPTION=off`` for each) unencrypted, and the
    engine's own tool, in turns."""
    size_mb = args.size_mb
    notes: list[str] = []
    if engine.name == "redis":
        cap = int(maxmemory_bytes(flavor.ram_mb) / MB * REDIS_SHARE_OF_MAXMEMORY)
        if size_mb > cap:
            notes.append(f"Redis data capped at {cap} MB of values: maxmemory is 75% of the flavor")
            size_mb = cap
    body = {
        "name": f"bench-{engine.name}",
        "flavorRef": flavor.id,
        "volume": {"size": args.volume},
        "datastore": {"type": engine.name, "version": DEFAULT_VERSIONS[engine.name]},
        **engine.instance_body(),
    }
    progress(f"{engine.name}: creating the instance")
    instance_id = api.create_instance(body)
    view = api.wait_idle(instance_id, 600)
    container = client.containers.get(f"cellar-{instance_id}")
    started = time.monotonic()
    progress(f"{engine.name}: filling {size_mb} MB")
    held_mb = engine.fill(api, instance_id, container, int(view["connection"]["port"]), size_mb)
    fill_s = time.monotonic() - started
    progress(f"{engine.name}: {held_mb:.0f} MB in {fill_s:.0f} s; warming up with one raw backup")
    engine.raw_backup(container)  # the page cache and the checkpoint are warm for both sides

    agent = agent_pid(container)
    cgroup = Cgroup(agent)
    probes: dict[str, Callable[[], float | None]] = {
        "agent_rss_mb": lambda: rss_mb(agent),
        "container_mb": cgroup.usage_mb,
        "container_anon_mb": cgroup.anon_mb,
    }
    if server is not None:
        probes["worker_rss_mb"] = lambda: worker_rss_mb(server.pid)
    idle = {name: probe() for name, probe in probes.items()}
    cellar_s: list[float] = []
    cellar_bytes: list[int] = []
    raw_s: list[float] = []
    raw_sync_s: list[float] = []
    raw_bytes: list[int] = []
    plain_s: list[float] = []  # Cellar with CELLAR_BACKUP_ENCRYPTION=off
    plain_bytes: list[int] = []
    peaks: list[dict[str, float | None]] = []
    cpu: list[dict[str, float]] = []

    def cpu_now() -> dict[str, float]:
        now = {"agent": cpu_s(agent), "container": cgroup.cpu_s() or 0.0}
        if server is not None:
            now["worker"] = sum(cpu_s(p) for p in worker_pids(server.pid))
        return now

    backup_id = ""
    for run in range(1, args.runs + 1):
        cpu_before = cpu_now()
        with PeakSampler(probes) as sampler:
            began = time.monotonic()
            backup_id = api.start_backup(instance_id, f"bench-{engine.name}-{run}")
            done = api.wait_backup_ended(backup_id)
            cellar_s.append(time.monotonic() - began)
        cpu.append({k: round(v - cpu_before[k], 2) for k, v in cpu_now().items()})
        if done["status"] != "COMPLETED":
            raise RuntimeError(f"backup {backup_id} {done['status']}: {done.get('fault')}")
        cellar_bytes.append(int(done["size_bytes"]))
        peaks.append(sampler.peaks)
        api.wait_idle(instance_id, 120)
        tool_s, synced_s, size = engine.raw_backup(container)
        raw_s.append(tool_s)
        raw_sync_s.append(synced_s)
        raw_bytes.append(size)
        if server is not None:
            seconds, size = plain_backup(api, server, instance_id, f"bench-{engine.name}-{run}")
            plain_s.append(seconds)
            plain_bytes.append(size)
        progress(
            f"{engine.name} run {run}: Cellar {cellar_bytes[-1] / MB:.0f} MB in "
            f"{cellar_s[-1]:.1f} s; raw {size / MB:.0f} MB in {tool_s:.1f} s "
            f"({synced_s:.1f} s with fsync)"
        )

    progress(f"{engine.name}: restoring backup {backup_id}")
    began = time.monotonic()
    restored = api.create_instance(
        {
            "name": f"bench-{engine.name}-restored",
            "flavorRef": flavor.id,
            "volume": {"size": args.volume},
            "restorePoint": {"backupRef": backup_id},
        }
    )
    api.wait_idle(restored)
    restore_s = time.monotonic() - began

    cellar_rate = rates(cellar_s, cellar_bytes)
    raw_rate = rates(raw_sync_s, raw_bytes)
    raw_rate_no_fsync = rates(raw_s, raw_bytes)
    ratio = cellar_rate["median"] / raw_rate["median"]
    ratio_no_fsync = cellar_rate["median"] / raw_rate_no_fsync["median"]
    worker_peak = rounded([p.get("worker_rss_mb") for p in peaks])
    agent_peak = rounded([p["agent_rss_mb"] for p in peaks])
    memory: dict[str, Any] = {
        "worker_peak_rss_mb": worker_peak,
        "agent_peak_rss_mb": agent_peak,
        "container_cgroup_peak_mb": rounded([p["container_mb"] for p in peaks]),
        "container_cgroup_peak_anon_mb": rounded([p["container_anon_mb"] for p in peaks]),
        "idle_before": {k: None if v is None else round(v, 1) for k, v in idle.items()},
        "per_run_peaks": [
            {k: None if v is None else round(v, 1) for k, v in p.items()} for p in peaks
        ],
    }
    if server is not None:
        notes.append(
            "the worker is one process for the whole benchmark: its RSS before this "
            "datastore's backups is memory.idle_before.worker_rss_mb"
        )
    plain: dict[str, Any] = {}
    encryption_ratio = None
    if plain_s:
        plain_rate = rates(plain_s, plain_bytes)
        encryption_ratio = cellar_rate["median"] / plain_rate["median"]
        plain = {
            "size_bytes": plain_bytes,
            "seconds": [round(s, 2) for s in plain_s],
            "mb_per_s": plain_rate,
        }
    if server is None:
        notes.append(
            "unencrypted backups not measured: --url names a Cellar this run cannot restart"
        )
        notes.append("worker memory not measured: --url names a Cellar this run did not start")
    return {
        "version": DEFAULT_VERSIONS[engine.name],
        "data": {
            "asked_mb": args.size_mb,
            "used_mb": size_mb,
            "engine_holds_mb": round(held_mb),
            "fill_s": round(fill_s, 1),
        },
        "cellar_backup": {
            "size_bytes": cellar_bytes,
            "seconds": [round(s, 2) for s in cellar_s],
            "mb_per_s": cellar_rate,
            "cpu_s_per_run": cpu,
        },
        "cellar_backup_unencrypted": plain,
        "encrypted_vs_unencrypted_ratio_median": (
            None if encryption_ratio is None else round(encryption_ratio, 2)
        ),
        "raw_backup": {
            "tool": engine.tool,
            "size_bytes": raw_bytes,
            "seconds_with_fsync": [round(s, 2) for s in raw_sync_s],
            "seconds_without_fsync": [round(s, 2) for s in raw_s],
            "mb_per_s": raw_rate,
            "mb_per_s_without_fsync": raw_rate_no_fsync,
        },
        "ratio_median": round(ratio, 2),
        "ratio_median_vs_raw_without_fsync": round(ratio_no_fsync, 2),
        "restore": {
            "backup_bytes": cellar_bytes[-1],
            "seconds": round(restore_s, 1),
            "mb_per_s": round(cellar_bytes[-1] / MB / restore_s, 1),
        },
        "memory": memory,
        "targets_met": {
            "ratio_at_least_0.8": ratio >= TARGET_RATIO,
            "encrypted_at_least_0.9_of_unencrypted": None
            if encryption_ratio is None
            else encryption_ratio >= TARGET_ENCRYPTED_RATIO,
            "worker_under_150_mb": None if worker_peak is None else worker_peak < TARGET_PEAK_MB,
            "agent_under_150_mb": None if agent_peak is None else agent_peak < TARGET_PEAK_MB,
        },
        "notes": notes,
    }


def leftovers(client: docker.DockerClient, project: str) -> Iterator[str]:
    for container in client.containers.list(
        all=True, filters={"label": f"cellar.project={project}"}
    ):
        yield str(container.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datastore", action="append", choices=sorted(ENGINES))
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flavor", default="4", choices=sorted(FLAVORS))
    parser.add_argument("--volume", type=int, default=4, help="GB")
    parser.add_argument("--url", help="an already running Cellar (default: start one)")
    parser.add_argument("--project", default=f"bench-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    datastores = args.datastore or ["postgresql", "mariadb", "redis"]
    flavor = FLAVORS[args.flavor]
    client = docker.from_env()
    results: dict[str, Any] = {}
    with given(args.url) if args.url else private_cellar(args.project) as served:
        api = Api(served.base, served.token)
        for name in datastores:
            engine = ENGINES[name](secrets.token_urlsafe(18))
            try:
                results[name] = measure(api, client, engine, args, flavor, served.server)
            except Exception as exc:  # noqa: BLE001 - one engine failing leaves the others
                progress(f"{name} failed: {exc}")
                results[name] = {"error": str(exc)}
            finally:
                progress(f"{name}: deleting what was made")
                api.clean_up()
    left = list(leftovers(client, served.project_id))
    if left:
        progress(f"containers left behind: {', '.join(left)}")
    result = {
        "benchmark": "backup",
        "cellar": args.url or "private cellar serve",
        "project": args.project,
        "runs": args.runs,
        "flavor": {"id": flavor.id, "ram_mb": flavor.ram_mb, "vcpus": flavor.vcpus},
        "mb": "2**20 bytes",
        "raw_baseline": "the engine's tool inside the instance's container, writing a local "
        "file, timed inside the container; ratio_median uses the time with the file fsynced, "
        "as Cellar's storage fsyncs each backup",
        "memory_sampling": f"every {SAMPLE_EVERY * 1000:.0f} ms during each Cellar backup; "
        "agent = the guest agent process alone (VmRSS), container = its memory cgroup "
        "(with page cache; anon = without)",
        "targets": {
            "ratio_median": TARGET_RATIO,
            "encrypted_vs_unencrypted": TARGET_ENCRYPTED_RATIO,
            "peak_rss_mb": TARGET_PEAK_MB,
        },
        "results": results,
        "containers_left_behind": left,
    }
    print(json.dumps(result, indent=2))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
