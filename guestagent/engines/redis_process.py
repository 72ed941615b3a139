"""The Redis server process of one data directory: start, wait until ready, stop.

Use :class:`RedisProcess` for everything that touches redis-server as a process; commands
go through ``redis_admin``. The server is the agent's child, run as the engine's OS user in
its own session; it logs to its standard output, which is relayed to the agent's log and
to a :class:`LogFile`.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import looks_like, relay_lines, send_signal, wait_gone
from guestagent.errors import EngineError
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

FIRST_POLL = 0.002  # redis-server is usually ready within milliseconds
POLL_EVERY = 0.02
LOG_TAIL = 20


class RedisProcess:
    """Starts and stops redis-server with ``config_file`` and tells whether it runs."""

    def __init__(
        self,
        binary: Path,
        config_file: Path,
        pid_file: Path,
        owner: OsUser,
        start_timeout: float = 30.0,
        log_file: LogFile | None = None,
    ) -> None:
        self.binary = binary
        self.config_file = config_file
        self.pid_file = pid_file
        self.owner = owner
        self.start_timeout = start_timeout
        self.log_file = log_file
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._stopped_on_purpose = False

    def running(self) -> bool:
        """True while a redis-server of this data directory runs (ours, or an earlier one)."""
        if self._child is not None:
            return self._child.poll() is None
        return self._pid_from_file() is not None

    def unexpected_exit(self) -> str | None:
        """Why our server went away when nobody stopped it, else None."""
        child = self._child
        if child is None or self._stopped_on_purpose or child.poll() is None:
            return None
        last = self._tail[-1] if self._tail else "no log output"
        return f"redis exited with code {child.returncode}: {last}"

    def start(self, ping: Callable[[], None], overrides: tuple[str, ...] = ()) -> None:
        """Start the server unless it runs, and wait until ``ping`` succeeds.

        ``ping`` raises EngineError while the server is not ready. ``overrides`` are
        settings for this run only (``--appendonly``, ``no``), after the config file's.
        """
        with self._lock:
            if not self.running():
                self._spawn(overrides)
        self.wait_until_ready(ping, time.monotonic() + self.start_timeout)

    def _spawn(self, overrides: tuple[str, ...] = ()) -> None:
        self._tail.clear()
        self._stopped_on_purpose = False
        try:
            self._child = subprocess.Popen(
                self.owner.command([str(self.binary), str(self.config_file), *overrides]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.pid_file.parent,
                start_new_session=True,
                umask=0o077,  # its data, snapshots and ACL file are private
                **self.owner.popen_kwargs(),
            )
        except OSError as exc:
            raise EngineError(f"cannot run redis-server: {exc.strerror or exc}") from exc
        assert self._child.stdout is not None
        self._relay = threading.Thread(
            target=self._relay_log, args=(self._child.stdout,), name="redis-log", daemon=True
        )
        self._relay.start()
        logger.info("started redis (pid %d)", self._child.pid)

    def _relay_log(self, stream: IO[bytes]) -> None:
        relay_lines(stream, "redis", self._tail, self.log_file)

    def wait_until_ready(self, ping: Callable[[], None], deadline: float) -> None:
        """Call ``ping`` until it succeeds; EngineError if the server exits or past ``deadline``."""
        last_error = "no answer"
        pause = FIRST_POLL
        while True:
            if not self.running():
                raise EngineError(self.unexpected_exit() or "redis stopped while starting")
            try:
                ping()
                return
            except EngineError as exc:
                last_error = exc.message
            if time.monotonic() >= deadline:
                raise EngineError(f"redis did not accept connections in time: {last_error}")
            time.sleep(pause)
            pause = min(POLL_EVERY, pause * 2)

    def stop(self, shutdown: Callable[[], None] | None = None, timeout: float = 30.0) -> None:
        """Ask with ``shutdown`` (or SIGTERM) to save and exit; SIGKILL past ``timeout``.

        ``shutdown`` sends Redis's SHUTDOWN command and raises EngineError if it failed.
        """
        with self._lock:
            self._stopped_on_purpose = True
            child = self._child
            pid = child.pid if child is not None else self._pid_from_file()
            if pid is None or (child is not None and child.poll() is not None):
                return
            started = time.monotonic()
            if not (shutdown is not None and self._shutdown(shutdown, pid, timeout)):
                for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                    send_signal(pid, sig)
                    if self._wait_gone(pid, wait):
                        break
                    logger.warning("redis (pid %d) ignored %s", pid, sig.name)
            if self._relay is not None:
                self._relay.join(timeout=2.0)
            logger.info("stopped redis in %.0f ms", (time.monotonic() - started) * 1000)

    def _shutdown(self, shutdown: Callable[[], None], pid: int, timeout: float) -> bool:
        try:
            shutdown()
        except EngineError as exc:
            logger.warning("SHUTDOWN failed (%s): sending SIGTERM", exc.message)
            return False
        return self._wait_gone(pid, timeout)

    def _wait_gone(self, pid: int, within: float) -> bool:
        return wait_gone(self._child, pid, within, _is_redis)

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_redis(pid) else None


def _is_redis(pid: int) -> bool:
    return looks_like(pid, ("redis-server",))
