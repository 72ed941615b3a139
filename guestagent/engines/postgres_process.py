"""The PostgreSQL server process of one data directory: initdb, start, wait, stop.

Use :class:`PostgresProcess` for everything that touches the postmaster as a process;
SQL lives in ``postgres_admin``. The postmaster is the agent's child, run as the engine's
OS user in its own session (see ``server_process``); its log lines are relayed to the
agent's log. The data directory stays a standard one, so ``pg_ctl`` can still inspect or
stop it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import psycopg

from guestagent import safe_files
from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import ServerProcess, SetupTool
from guestagent.errors import EngineError, NotPrepared
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
OUTPUT_BYTES = 16 * 1024  # the most of a tool's output kept for a message


class PostgresProcess(ServerProcess):
    """Starts and stops the postmaster of ``pgdata`` and tells whether it runs."""

    name = "postgres"
    program = "postgres"
    command_names = ("postgres", "postmaster")
    # Fast shutdown; immediate, then a kill, if it takes too long.
    stop_signals = (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL)

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
        super().__init__(pgdata / "postmaster.pid", owner, start_timeout, log_file, port)
        self.bin_dir = bin_dir
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self._initdb = SetupTool("initdb", owner)

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
        self._initdb.start(argv, self.pgdata.parent)

    def initdb_pending(self) -> bool:
        return self._initdb.pending()

    def finish_initdb(self) -> None:
        """Wait for the background ``initdb``; raise EngineError if it failed."""
        self._initdb.finish()

    def cancel_initdb(self) -> None:
        """Kill the background ``initdb`` (its half-made cluster is about to be replaced)."""
        self._initdb.cancel()

    def tool(
        self,
        argv: list[str],
        stdout: int | IO[bytes],
        stderr: IO[bytes],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one of PostgreSQL's programs as the engine's user, beside ``pgdata``, with
        ``env`` added to its environment; EngineError if it cannot run."""
        kwargs = self.owner.popen_kwargs()
        kwargs["env"] = {**kwargs["env"], **(env or {})}
        try:
            return subprocess.Popen(
                self.owner.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.pgdata.parent,
                **kwargs,
            )
        except OSError as exc:
            raise EngineError(f"cannot run {Path(argv[0]).name}: {exc.strerror or exc}") from exc

    def run_tool(
        self, argv: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run one of PostgreSQL's programs to its end (see :meth:`tool`); its exit code and
        the start of its output. EngineError past ``timeout`` seconds."""
        with tempfile.TemporaryFile() as output:
            child = self.tool(argv, stdout=output, stderr=output, env=env)
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise EngineError(
                    f"{Path(argv[0]).name} did not finish within {timeout:.0f} s"
                ) from exc
            finally:
                if child.poll() is None:
                    child.kill()
                child.wait()
            output.seek(0)
            return code, output.read(OUTPUT_BYTES).decode("utf-8", "replace")

    def _command(self) -> list[str]:
        return [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)]

    def _check_startable(self) -> None:
        if not self.initialized():
            raise NotPrepared("the PostgreSQL data directory is not initialised")

    def _before_spawn(self) -> None:
        if self.pid_file.exists() and self._pid_from_file() is None:
            logger.info("removing the stale %s", self.pid_file)
            self.pid_file.unlink(missing_ok=True)
        safe_files.make_dir(self.socket_dir, self.owner)

    def _probe(self) -> str | None:
        """Whether ``SELECT 1`` works over the socket."""
        try:
            with psycopg.connect(**self.conninfo(), autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
        return None
