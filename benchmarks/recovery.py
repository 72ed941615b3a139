"""Time from a killed worker's restart to ACTIVE, in the middle of a PostgreSQL provision.

Usage: python benchmarks/recovery.py [--runs 5] [--datastore postgresql]

It starts a private ``cellar serve`` (what ``make up`` runs). Each run asks for an
instance, and once its provision has reached the ``prepare`` step (the agent is
setting the engine up) sends SIGKILL to the worker. ``cellar serve`` starts a new
worker by itself; the run measures the seconds from that new worker's start to the
instance's ACTIVE, and from the kill to ACTIVE (which includes the supervisor's
back-off: 1 s, doubling for a worker that dies again within a minute). The baseline,
measured in the same run, is an uninterrupted provision: POST to ACTIVE. Prints one
JSON object with medians, spreads and the ratio of restart-to-ACTIVE to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import requests

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    DEFAULT_VERSIONS,
    POLL,
    private_cellar,
    progress,
    summary,
    wait,
    workers_of,
)

TARGET_S = 15.0
HTTP = requests.Session()  # sends the benchmark project's token once it is known
WITHIN = 300.0


def ask(base: str, datastore: str) -> str:
    body = {
        "instance": {
            "name": "bench",
            "flavorRef": "2",
            "volume": {"size": 1},
            "datastore": {"type": datastore, "version": DEFAULT_VERSIONS[datastore]},
        }
    }
    reply = HTTP.post(f"{base}/instances", json=body, timeout=30)
    reply.raise_for_status()
    return str(reply.json()["instance"]["id"])


def view(base: str, instance_id: str) -> dict[str, object]:
    return dict(HTTP.get(f"{base}/instances/{instance_id}", timeout=30).json()["instance"])


def step_of(base: str, instance_id: str) -> str:
    task = view(base, instance_id).get("task")
    return str(task.get("step", "")) if isinstance(task, dict) else ""


def until_active(base: str, instance_id: str) -> float:
    """When the instance turned ACTIVE (``time.monotonic``); raises if it failed."""
    end = time.monotonic() + WITHIN
    while time.monotonic() < end:
        found = view(base, instance_id)
        if found["status"] == "ACTIVE" and not found.get("task"):
            return time.monotonic()
        if found["status"] == "ERROR":
            raise RuntimeError(f"instance {instance_id} failed: {found.get('fault')}")
        time.sleep(POLL)
    raise TimeoutError(f"instance {instance_id} not ACTIVE after {WITHIN} s")


def drop(base: str, instance_id: str) -> None:
    HTTP.delete(f"{base}/instances/{instance_id}", timeout=30)
    wait(
        lambda: HTTP.get(f"{base}/instances/{instance_id}", timeout=30).status_code == 404,
        WITHIN,
        f"instance {instance_id} deleted",
    )


def baseline(base: str, datastore: str) -> float:
    started = time.monotonic()
    instance_id = ask(base, datastore)
    took = until_active(base, instance_id) - started
    drop(base, instance_id)
    return took


def crash_run(base: str, serve_pid: int, datastore: str) -> tuple[float, float]:
    """Seconds from the new worker's start to ACTIVE, and from the kill to ACTIVE."""
    instance_id = ask(base, datastore)
    wait(lambda: step_of(base, instance_id) == "prepare", WITHIN, "the prepare step", 0.005)
    (old,) = workers_of(serve_pid)
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    new: list[int] = []

    def restarted() -> bool:
        try:
            new[:] = [p for p in workers_of(serve_pid) if p != old]
        except ProcessLookupError:
            return False
        return bool(new)

    wait(restarted, 120, "a new worker", every=0.01)
    back = time.monotonic()
    active = until_active(base, instance_id)
    drop(base, instance_id)
    return active - back, active - killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--datastore", default="postgresql", choices=sorted(DEFAULT_VERSIONS))
    args = parser.parse_args()
    with private_cellar() as cellar:
        assert cellar.serve_pid is not None
        base = cellar.base
        HTTP.headers["X-Auth-Token"] = cellar.token
        baseline(base, args.datastore)  # warm-up: images and network in the page cache
        plain, after_restart, after_kill = [], [], []
        for run in range(1, args.runs + 1):
            plain.append(baseline(base, args.datastore))
            back, killed = crash_run(base, cellar.serve_pid, args.datastore)
            after_restart.append(back)
            after_kill.append(killed)
            progress(f"run {run}: restart to ACTIVE {back:.2f} s, kill to ACTIVE {killed:.2f} s, "
                     f"uninterrupted provision {plain[-1]:.2f} s")  # fmt: skip
    ratio = statistics.median(after_restart) / statistics.median(plain)
    print(
        json.dumps(
            {
                "datastore": args.datastore,
                "runs": args.runs,
                "restart_to_active": summary(after_restart),
                "kill_to_active": summary(after_kill),
                "baseline_uninterrupted_provision": summary(plain),
                "ratio_restart_to_active_vs_baseline": round(ratio, 2),
                "target_restart_to_active_s": TARGET_S,
                "met": max(after_restart) <= TARGET_S,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
