"""A worker's heartbeat: it says every second that the worker lives, and keeps the leases
of the steps the worker is running.

Each worker process has one row in ``workers``. Its heartbeat thread updates that row
every ``EVERY`` seconds and pushes forward the lease of every step the process is
running, until that step's deadline; a lease found taken over is marked lost, so the
step stops at its next ``keep_lease``. When a worker dies, its heartbeat goes stale
within seconds and its steps are taken over, without waiting for their leases to run
out. A worker that starts on a host first buries the rows of that host's workers whose
processes are gone, so their steps are taken over at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import delete, exists, select, update

from cellar.db import Database
from cellar.models import Task, Worker, utcnow
from taskmanager.lease import Lease

logger = logging.getLogger(__name__)

EVERY = 1.0
BURIED = dt.datetime(1970, 1, 1)
FORGET_AFTER = dt.timedelta(days=1)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def this_host() -> str:
    """The host's name and boot: a process id means something only on the same boot."""
    try:
        boot = BOOT_ID.read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()[:100]}/{boot}"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclasses.dataclass
class _Held:
    lease: Lease
    until: dt.datetime  # the step's deadline: no renewal after it
    renewed: float = dataclasses.field(default_factory=time.monotonic)


class Heartbeat:
    """This worker process's identity, its heartbeat thread and the leases it keeps."""

    def __init__(self, db: Database, lease_seconds: float, worker_id: str | None = None) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or new_worker_id()
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Record this worker and start beating (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.register()
        self._thread.start()
        logger.info("worker %s is alive", self.worker_id)

    def stop(self) -> None:
        """Stop beating and mark this worker dead, so whatever it still holds is free."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception), self.db.session() as session:
            session.execute(
                update(Worker).where(Worker.id == self.worker_id).values(heartbeat_at=BURIED)
            )

    def register(self) -> None:
        """Add this worker's row and bury this host's workers whose processes are gone;
        forget workers silent for a day that hold no lease."""
        host, now = this_host(), utcnow()
        with self.db.session() as session:
            session.execute(
                delete(Worker).where(
                    Worker.heartbeat_at < now - FORGET_AFTER,
                    ~exists().where(Task.lease_owner == Worker.id),
                )
            )
            for worker in session.scalars(select(Worker).where(Worker.host == host)):
                if worker.heartbeat_at > BURIED and not _process_lives(worker.pid):
                    logger.info("worker %s (pid %d) is gone", worker.id, worker.pid)
                    worker.heartbeat_at = BURIED
            session.add(
                Worker(id=self.worker_id, host=host, pid=os.getpid(), started_at=now,
                       heartbeat_at=now)
            )  # fmt: skip

    def beat(self) -> None:
        """One round: this worker lives, and its running steps keep their leases."""
        with self.db.session() as session:
            session.execute(
                update(Worker).where(Worker.id == self.worker_id).values(heartbeat_at=utcnow())
            )
        with self._lock:
            held = list(self._held.values())
        now, clock = utcnow(), time.monotonic()
        for item in held:
            if item.lease.lost or now > item.until:
                continue
            if clock - item.renewed < self.lease_seconds / 3:
                continue
            item.renewed = clock
            if not item.lease.renew(self.db, self.lease_seconds):
                logger.warning(
                    "task %s: attempt %d lost its lease", item.lease.task_id, item.lease.attempt
                )

    @contextlib.contextmanager
    def hold(self, lease: Lease, until: dt.datetime) -> Iterator[Lease]:
        """Keep ``lease`` alive while the block runs, but not past ``until``."""
        with self._lock:
            self._held[lease.task_id] = _Held(lease, until)
        try:
            yield lease
        finally:
            with self._lock:
                found = self._held.get(lease.task_id)
                if found is not None and found.lease is lease:
                    del self._held[lease.task_id]

    def _run(self) -> None:
        while not self._stop.wait(EVERY):
            try:
                self.beat()
            except Exception:  # a missed beat is retried at the next one
                logger.exception("worker heartbeat failed")


def _process_lives(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
