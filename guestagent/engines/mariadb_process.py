"""The MariaDB server process of one data directory: install-db, start, wait, stop.

Use :class:`MariadbProcess` for everything that touches ``mariadbd`` as a process; SQL
lives in ``mariadb_admin``. The server is the agent's child, run as the engine's OS user
in its own session, reading only Cellar's option file; its error log (stderr) is relayed
to the agent's log and to a :class:`LogFile`. The agent reaches it over the unix socket
as an account authenticated by ``unix_socket``: the agent's own OS account.
"""

from __future__ import annotations

import collections
import logging
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pymysql

from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import looks_like, relay_lines, send_signal, wait_gone
from guestagent.errors import EngineError, NotPrepared
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

POLL_EVERY = 0.05
CONNECT_TIMEOUT = 2.0
LOG_TAIL = 20
INSTALLED_FILE = "mysql_upgrade_info"  # written by mariadb-install-db once it succeeded
# Bootstrap-only settings: a small pool, no binary log, no buffer pool dump to write.
INSTALL_OPTIONS = (
    "--skip-test-db",
    "--auth-root-authentication-method=socket",
    "--cross-bootstrap",  # no host name lookup, no accounts named after this host
    "--skip-name-resolve",
    "--rpm",  # no chown of the PAM plugin's directory
    "--skip-log-bin",
    "--innodb-buffer-pool-size=32M",
    "--innodb-flush-log-at-trx-commit=0",
    "--loose-innodb-buffer-pool-dump-at-shutdown=0",
    "--loose-innodb-buffer-pool-load-at-startup=0",
)


def admin_account() -> str:
    """The MariaDB account of the agent: its own OS user's name, via ``unix_socket``."""
    return pwd.getpwuid(os.geteuid()).pw_name


class MariadbProcess:
    """Starts and stops the ``mariadbd`` of ``datadir`` and tells whether it runs."""

    def __init__(
        self,
        basedir: Path,
        datadir: Path,
        defaults_file: Path,
        socket: Path,
        port: int,
        owner: OsUser,
        start_timeout: float = 60.0,
        log_file: LogFile | None = None,
    ) -> None:
        self.basedir = basedir
        self.datadir = datadir
        self.defaults_file = defaults_file
        self.socket = socket
        self.port = port
        self.owner = owner
        self.start_timeout = start_timeout
        self.log_file = log_file
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._install: subprocess.Popen[bytes] | None = None
        self._install_started = 0.0
        self._relay: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._stopped_on_purpose = False

    @property
    def mariadbd(self) -> Path:
        return self.basedir / "sbin" / "mariadbd"

    @property
    def install_db(self) -> Path:
        return self.basedir / "bin" / "mariadb-install-db"

    @property
    def pid_file(self) -> Path:
        return self.datadir / "mariadbd.pid"

    def connect(self) -> pymysql.connections.Connection:
        """An autocommit session as the agent's account over the socket.

        The socket is opened here, not by PyMySQL, so that a refused connection never
        leaves it open; an unreachable server raises ``pymysql.OperationalError``.
        """
        conn = pymysql.connect(
            unix_socket=str(self.socket),
            user=admin_account(),
            charset="utf8mb4",
            autocommit=True,
            defer_connect=True,
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(self.socket))
            conn.connect(sock)
        except OSError as exc:
            sock.close()
            raise pymysql.OperationalError(2002, f"cannot reach the socket: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        return conn

    def initialized(self) -> bool:
        return (self.datadir / INSTALLED_FILE).exists()

    def install(self) -> None:
        """Create the system tables in ``datadir`` (its parent must belong to the OS user)."""
        self.start_install()
        self.finish_install()

    def start_install(self) -> None:
        """Begin ``mariadb-install-db`` in the background; :meth:`finish_install` waits."""
        argv = [
            str(self.install_db),
            "--no-defaults",
            f"--basedir={self.basedir}",
            f"--datadir={self.datadir}",
            f"--auth-root-socket-user={admin_account()}",
            *INSTALL_OPTIONS,
        ]
        self._install_started = time.monotonic()
        try:
            self._install = subprocess.Popen(
                self.owner.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.datadir.parent,
                **self.owner.popen_kwargs(),
            )
        except OSError as exc:
            raise EngineError(f"cannot run mariadb-install-db: {exc.strerror or exc}") from exc

    def install_pending(self) -> bool:
        return self._install is not None

    def finish_install(self) -> None:
        """Wait for the background install-db; raise EngineError if it failed."""
        child, self._install = self._install, None
        if child is None:
            return
        output, _ = child.communicate()
        if child.returncode != 0:
            lines = output.decode("utf-8", "replace").strip().splitlines()
            errors = [line for line in lines if "[ERROR]" in line] or lines
            raise EngineError(
                f"mariadb-install-db failed (exit {child.returncode}): {' | '.join(errors[-3:])}"
            )
        logger.info(
            "mariadb-install-db done in %.0f ms", (time.monotonic() - self._install_started) * 1000
        )

    def running(self) -> bool:
        """True while a ``mariadbd`` serves ``datadir`` (ours, or one left by an earlier agent)."""
        if self._child is not None:
            return self._child.poll() is None
        return self._pid_from_file() is not None

    def unexpected_exit(self) -> str | None:
        """Why our server went away when nobody stopped it, else None."""
        child = self._child
        if child is None or self._stopped_on_purpose or child.poll() is None:
            return None
        last = self._tail[-1] if self._tail else "no log output"
        return f"mariadbd exited with code {child.returncode}: {last}"

    def start(self) -> None:
        """Start the server unless it runs, and wait until it accepts connections."""
        with self._lock:
            if not self.initialized():
                raise NotPrepared("the MariaDB data directory is not initialised")
            if not self.running():
                self._spawn()
        self.wait_until_ready(time.monotonic() + self.start_timeout)

    def _spawn(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.owner.own(self.socket.parent)
        self._tail.clear()
        self._stopped_on_purpose = False
        argv = [str(self.mariadbd), f"--defaults-file={self.defaults_file}"]
        try:
            self._child = subprocess.Popen(
                self.owner.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.datadir,
                start_new_session=True,
                **self.owner.popen_kwargs(),
            )
        except OSError as exc:
            raise EngineError(f"cannot run mariadbd: {exc.strerror or exc}") from exc
        assert self._child.stdout is not None
        self._relay = threading.Thread(
            target=self._relay_log, args=(self._child.stdout,), name="mariadb-log", daemon=True
        )
        self._relay.start()
        logger.info("started mariadbd (pid %d) on port %d", self._child.pid, self.port)

    def _relay_log(self, stream: IO[bytes]) -> None:
        relay_lines(stream, "mariadb", self._tail, self.log_file)

    def wait_until_ready(self, deadline: float) -> None:
        """Poll over the socket until ``SELECT 1`` works; EngineError past ``deadline``."""
        last_error = "no answer"
        while True:
            if not self.running():
                raise EngineError(self.unexpected_exit() or "mariadbd stopped while starting")
            try:
                conn = self.connect()
                try:
                    with conn.cursor() as cursor:
                        cursor.execute("SELECT 1")
                finally:
                    conn.close()
                return
            except pymysql.MySQLError as exc:
                last_error = str(exc.args[-1]) if exc.args else type(exc).__name__
            if time.monotonic() >= deadline:
                raise EngineError(f"mariadbd did not accept connections in time: {last_error}")
            time.sleep(POLL_EVERY)

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (SIGTERM); SIGKILL past ``timeout``."""
        with self._lock:
            self._stopped_on_purpose = True
            child = self._child
            pid = child.pid if child is not None else self._pid_from_file()
            if pid is None or (child is not None and child.poll() is not None):
                return
            started = time.monotonic()
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                send_signal(pid, sig)
                if self._wait_gone(pid, wait):
                    break
                logger.warning("mariadbd (pid %d) ignored %s", pid, sig.name)
            if self._relay is not None:
                self._relay.join(timeout=2.0)
            logger.info("stopped mariadbd in %.0f ms", (time.monotonic() - started) * 1000)

    def _wait_gone(self, pid: int, within: float) -> bool:
        return wait_gone(self._child, pid, within, _is_mariadbd)

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_mariadbd(pid) else None


def _is_mariadbd(pid: int) -> bool:
    return looks_like(pid, ("mariadbd", "mysqld"))
