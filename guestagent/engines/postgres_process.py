"""The PostgreSQL server process of one data directory: initdb, start, wait, stop.

Use :class:`PostgresProcess` for everything that touches the postmaster as a process;
SQL lives in ``postgres_admin``. The postmaster is the agent's child, run as the engine's
OS user in its own session; its log lines are relayed to the agent's log. The data
directory stays a standard one, so ``pg_ctl`` can still inspect or stop it.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import psycopg

from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import looks_like, relay_lines, send_signal, wait_gone
from guestagent.errors import EngineError, NotPrepared
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
POLL_EVERY = 0.05
LOG_TAIL = 20


class PostgresProcess:
    """Starts and stops the postmaster of ``pgdata`` and tells whether it runs."""

    def __init__(
        self,
        bin_dir: Path,
        pgdata: Path,
        socket_dir: Path,
        port: int,
        owner: OsUser,
        start_timeout: float = 60.0,
        log_file: LogFile | None = None,
    ) -> None:
        self.log_file = log_file
        self.bin_dir = bin_dir
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self.port = port
        self.owner = owner
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._initdb: subprocess.Popen[bytes] | None = None
        self._initdb_started = 0.0
        self._relay: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._stopped_on_purpose = False

    def conninfo(self, dbname: str = "postgres") -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` as the superuser over the socket."""
        return {
            "host": str(self.socket_dir),
            "port": self.port,
            "user": SUPERUSER,
            "dbname": dbname,
            "connect_timeout": 2,
        }

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def initdb(self) -> None:
        """Create the cluster in ``pgdata`` (its parent must belong to the engine's user)."""
        self.start_initdb()
        self.finish_initdb()

    def start_initdb(self) -> None:
        """Begin ``initdb`` in the background; :meth:`finish_initdb` waits for it."""
        argv = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "-U", SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]  # fmt: skip
        self._initdb_started = time.monotonic()
        try:
            self._initdb = subprocess.Popen(
                self.owner.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.pgdata.parent,
                **self.owner.popen_kwargs(),
            )
        except OSError as exc:
            raise EngineError(f"cannot run initdb: {exc.strerror or exc}") from exc

    def initdb_pending(self) -> bool:
        return self._initdb is not None

    def finish_initdb(self) -> None:
        """Wait for the background ``initdb``; raise EngineError if it failed."""
        child, self._initdb = self._initdb, None
        if child is None:
            return
        output, _ = child.communicate()
        if child.returncode != 0:
            text = output.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise EngineError(f"initdb failed (exit {child.returncode}): {' | '.join(text)}")
        logger.info("initdb done in %.0f ms", (time.monotonic() - self._initdb_started) * 1000)

    def running(self) -> bool:
        """True while a postmaster serves ``pgdata`` (ours, or one started by pg_ctl)."""
        if self._child is not None:
            return self._child.poll() is None
        return self._pid_from_file() is not None

    def unexpected_exit(self) -> str | None:
        """Why our postmaster went away when nobody stopped it, else None."""
        child = self._child
        if child is None or self._stopped_on_purpose or child.poll() is None:
            return None
        last = self._tail[-1] if self._tail else "no log output"
        return f"postgres exited with code {child.returncode}: {last}"

    def recent_log(self) -> list[str]:
        """The server's last log lines (all of them once it has exited)."""
        child, relay = self._child, self._relay
        if child is not None and child.poll() is not None and relay is not None:
            relay.join(timeout=2.0)
        return list(self._tail)

    def cancel_initdb(self) -> None:
        """Kill the background ``initdb`` (its half-made cluster is about to be replaced)."""
        child, self._initdb = self._initdb, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
            logger.info("cancelled the early initdb (pid %d)", child.pid)
        child.communicate()

    def start(self, timeout: float | None = None) -> None:
        """Start the postmaster unless it runs, and wait until it accepts connections
        (``timeout`` seconds, the start timeout by default; recovery may need longer)."""
        with self._lock:
            if not self.initialized():
                raise NotPrepared("the PostgreSQL data directory is not initialised")
            if not self.running():
                self._spawn()
        wait = self.start_timeout if timeout is None else timeout
        self.wait_until_ready(time.monotonic() + wait)

    def _spawn(self) -> None:
        self._remove_stale_pid_file()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.owner.own(self.socket_dir)
        self._tail.clear()
        self._stopped_on_purpose = False
        try:
            self._child = subprocess.Popen(
                self.owner.command([str(self.bin_dir / "postgres"), "-D", str(self.pgdata)]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.pgdata,
                start_new_session=True,
                **self.owner.popen_kwargs(),
            )
        except OSError as exc:
            raise EngineError(f"cannot run postgres: {exc.strerror or exc}") from exc
        assert self._child.stdout is not None
        self._relay = threading.Thread(
            target=self._relay_log, args=(self._child.stdout,), name="postgres-log", daemon=True
        )
        self._relay.start()
        logger.info("started postgres (pid %d) on port %d", self._child.pid, self.port)

    def _relay_log(self, stream: IO[bytes]) -> None:
        relay_lines(stream, "postgres", self._tail, self.log_file)

    def wait_until_ready(self, deadline: float) -> None:
        """Poll over the socket until ``SELECT 1`` works; EngineError past ``deadline``."""
        last_error = "no answer"
        while True:
            if not self.running():
                raise EngineError(self.unexpected_exit() or "postgres stopped while starting")
            try:
                with psycopg.connect(**self.conninfo(), autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
            if time.monotonic() >= deadline:
                raise EngineError(f"postgres did not accept connections in time: {last_error}")
            time.sleep(POLL_EVERY)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT); immediate (SIGQUIT), then SIGKILL, past ``timeout``."""
        with self._lock:
            self._stopped_on_purpose = True
            child = self._child
            pid = child.pid if child is not None else self._pid_from_file()
            if pid is None or (child is not None and child.poll() is not None):
                return
            started = time.monotonic()
            for sig, wait in (
                (signal.SIGINT, timeout),
                (signal.SIGQUIT, 5.0),
                (signal.SIGKILL, 5.0),
            ):
                send_signal(pid, sig)
                if self._wait_gone(pid, wait):
                    break
                logger.warning("postgres (pid %d) ignored %s", pid, sig.name)
            if self._relay is not None:
                self._relay.join(timeout=2.0)
            logger.info("stopped postgres in %.0f ms", (time.monotonic() - started) * 1000)

    def _wait_gone(self, pid: int, within: float) -> bool:
        return wait_gone(self._child, pid, within, _is_postgres)

    def _pid_from_file(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _is_postgres(pid) else None

    def _remove_stale_pid_file(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists() and self._pid_from_file() is None:
            logger.info("removing the stale %s", pid_file)
            pid_file.unlink(missing_ok=True)


def _is_postgres(pid: int) -> bool:
    return looks_like(pid, ("postgres", "postmaster"))
