"""The MariaDB server process of one data directory: install-db, start, wait, stop.

Use :class:`MariadbProcess` for everything that touches ``mariadbd`` as a process; SQL
lives in ``mariadb_admin``. The server is the agent's child, run as the engine's OS user
in its own session (see ``server_process``), reading only Cellar's option file; its error
log (stderr) is relayed to the agent's log and to a :class:`LogFile`. The agent reaches it
over the unix socket as an account authenticated by ``unix_socket``: the agent's own OS
account.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
from pathlib import Path

import pymysql

from guestagent import safe_files
from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import ServerProcess, SetupTool
from guestagent.errors import NotPrepared
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
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


class MariadbProcess(ServerProcess):
    """Starts and stops the ``mariadbd`` of ``datadir`` and tells whether it runs."""

    name = "mariadb"
    program = "mariadbd"
    command_names = ("mariadbd", "mysqld")
    stop_timeout = 60.0

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
        tmpdir: Path | None = None,
    ) -> None:
        super().__init__(datadir / "mariadbd.pid", owner, start_timeout, log_file, port)
        self.tmpdir = tmpdir
        self.basedir = basedir
        self.datadir = datadir
        self.defaults_file = defaults_file
        self.socket = socket
        self._install = SetupTool("mariadb-install-db", owner, error_tag="[ERROR]")

    @property
    def mariadbd(self) -> Path:
        return self.basedir / "sbin" / "mariadbd"

    @property
    def install_db(self) -> Path:
        return self.basedir / "bin" / "mariadb-install-db"

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
        self._install.start(argv, self.datadir.parent)

    def install_pending(self) -> bool:
        return self._install.pending()

    def finish_install(self) -> None:
        """Wait for the background install-db; raise EngineError if it failed."""
        self._install.finish()

    def _command(self) -> list[str]:
        return [str(self.mariadbd), f"--defaults-file={self.defaults_file}"]

    def _check_startable(self) -> None:
        if not self.initialized():
            raise NotPrepared("the MariaDB data directory is not initialised")

    def _before_spawn(self) -> None:
        safe_files.make_dir(self.socket.parent, self.owner)
        if self.tmpdir is not None:
            safe_files.make_dir(self.tmpdir, self.owner, mode=0o700)

    def _probe(self) -> str | None:
        """Whether ``SELECT 1`` works over the socket."""
        try:
            conn = self.connect()
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                conn.close()
        except pymysql.MySQLError as exc:
            return str(exc.args[-1]) if exc.args else type(exc).__name__
        return None
