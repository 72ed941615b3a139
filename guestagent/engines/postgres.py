"""PostgreSQL 15 as a Cellar engine.

:class:`PostgresEngine` is the RPC-facing facade: it orders the work and keeps the
service status; the process and its files are handled by ``postgres_process`` and
``postgres_config``, databases and users by ``postgres_admin``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from cellar import parameters
from cellar.errors import CellarError
from guestagent.engines import postgres_admin
from guestagent.engines.base import (
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    Engine,
    GrantAccessRequest,
    PrepareRequest,
    RevokeAccessRequest,
    ServiceStatus,
    StatusReport,
    User,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_config import ServerSettings, write_config, write_user_config
from guestagent.engines.postgres_process import PostgresProcess
from guestagent.errors import EngineError, NotPrepared
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

MARKER = ".cellar-prepared"


@dataclasses.dataclass(frozen=True)
class PostgresOptions:
    """Where and as whom PostgreSQL runs; the defaults are the instance image's."""

    port: int = 5432
    socket_dir: Path = Path("/run/postgresql")
    listen_addresses: str = "*"
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    os_user: str | None = "postgres"
    start_timeout: float = 60.0


class PostgresEngine(Engine):
    """One PostgreSQL cluster in ``<data_dir>/pgdata``: prepared once, restarted on boot."""

    name = "postgresql"
    version = "15"

    def __init__(self, data_dir: Path, options: PostgresOptions | None = None) -> None:
        super().__init__(data_dir)
        self.options = options or PostgresOptions()
        self.owner = OsUser(self.options.os_user)
        self.pgdata = self.data_dir / "pgdata"
        self.marker = self.data_dir / MARKER
        self.process = PostgresProcess(
            bin_dir=self.options.bin_dir,
            pgdata=self.pgdata,
            socket_dir=self.options.socket_dir,
            port=self.options.port,
            owner=self.owner,
            start_timeout=self.options.start_timeout,
            log_file=LogFile(self.data_dir / "log" / "postgresql.log"),
        )
        self.admin = PostgresAdmin(self.process)
        self._lifecycle = threading.Lock()
        self._preparing = False
        self._failure: str | None = None

    def prepared(self) -> bool:
        return self.marker.exists()

    def prepare(self, request: PrepareRequest) -> ServiceStatus:
        configuration = parameters.check_values(
            self.name, self.version, dict(request.configuration)
        )
        databases = [postgres_admin.checked_database(d) for d in request.databases]
        users = [postgres_admin.checked_user(u) for u in request.users]
        with self._lifecycle:
            self._preparing = True
            self._failure = None
            started = time.monotonic()
            try:
                self._ensure_running(request.memory_mb, configuration)
                created_dbs = sum(self.admin.create_database(d) for d in databases)
                created_users = sum(self.admin.create_user(u) for u in users)
                self._write_marker()
            except CellarError as exc:
                self._failure = exc.message
                raise
            except Exception as exc:
                self._failure = f"prepare failed: {type(exc).__name__}"
                logger.exception("prepare failed")
                raise EngineError(self._failure) from exc
            finally:
                self._preparing = False
        logger.info(
            "prepared in %.0f ms (%d new databases, %d new users)",
            (time.monotonic() - started) * 1000,
            created_dbs,
            created_users,
        )
        return ServiceStatus.HEALTHY

    def warm_up(self) -> None:
        """Start initdb at once on a new volume, so it overlaps the agent's own start."""
        with self._lifecycle:
            if self.prepared() or self.process.initialized() or self.process.initdb_pending():
                return
            try:
                self._clear_data_dir()
                self.process.start_initdb()
            except (OSError, CellarError) as exc:
                logger.warning("early initdb not started (prepare will run it): %s", exc)

    def _clear_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.owner.own(self.data_dir)
        if self.pgdata.exists():
            logger.warning("removing %s left by an interrupted initdb", self.pgdata)
            shutil.rmtree(self.pgdata)

    def _ensure_running(self, memory_mb: int, configuration: dict[str, str]) -> None:
        if self.process.initdb_pending():
            try:
                self.process.finish_initdb()
            except CellarError as exc:
                logger.warning("early initdb failed, running it again: %s", exc.message)
        if not self.process.initialized():
            self._clear_data_dir()
            self.process.initdb()
        changed = write_config(self.pgdata, self._settings(memory_mb), self.owner)
        changed |= write_user_config(self.pgdata, configuration, self.owner)
        if not self.process.running():
            started = time.monotonic()
            self.process.start()
            logger.info("postgres ready in %.0f ms", (time.monotonic() - started) * 1000)
        elif changed:
            self.admin.reload()
            logger.info("reloaded the configuration (memory settings apply at the next start)")

    def _settings(self, memory_mb: int) -> ServerSettings:
        return ServerSettings(
            port=self.options.port,
            socket_dir=self.options.socket_dir,
            memory_mb=memory_mb,
            listen_addresses=self.options.listen_addresses,
        )

    def _write_marker(self) -> None:
        if self.marker.exists():
            return
        scratch = self.marker.with_name(MARKER + ".new")
        scratch.write_text(json.dumps({"engine": self.name, "version": self.version}) + "\n")
        os.replace(scratch, self.marker)

    def status(self) -> StatusReport:
        if self._preparing:
            return StatusReport(ServiceStatus.BUILDING, "prepare is running")
        if self._failure is not None:
            return StatusReport(ServiceStatus.FAILED, self._failure)
        if not self.prepared():
            return StatusReport(ServiceStatus.NEW)
        crashed = self.process.unexpected_exit()
        if crashed is not None:
            return StatusReport(ServiceStatus.FAILED, crashed)
        if not self.process.running():
            return StatusReport(ServiceStatus.SHUTDOWN, "postgres is not running")
        try:
            self.admin.ping()
        except EngineError as exc:
            return StatusReport(ServiceStatus.SHUTDOWN, exc.message)
        return StatusReport(ServiceStatus.HEALTHY)

    def _require_prepared(self) -> None:
        if not self.prepared():
            raise NotPrepared("the instance is not prepared yet")

    def create_database(self, request: Database) -> bool:
        self._require_prepared()
        return self.admin.create_database(request)

    def list_databases(self) -> list[Database]:
        self._require_prepared()
        return self.admin.list_databases()

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        self._require_prepared()
        return self.admin.delete_database(request.name)

    def create_user(self, request: User) -> bool:
        self._require_prepared()
        return self.admin.create_user(request)

    def list_users(self) -> list[User]:
        self._require_prepared()
        return self.admin.list_users()

    def delete_user(self, request: DeleteUserRequest) -> bool:
        self._require_prepared()
        return self.admin.delete_user(request.name)

    def change_password(self, request: User) -> bool:
        self._require_prepared()
        return self.admin.change_password(request)

    def grant_access(self, request: GrantAccessRequest) -> None:
        self._require_prepared()
        self.admin.grant_access(request.name, request.databases)

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        self._require_prepared()
        return self.admin.revoke_access(request.name, request.database)

    def enable_root(self, password: str) -> str:
        self._require_prepared()
        return self.admin.enable_root(password)

    def start(self) -> None:
        with self._lifecycle:
            self._require_prepared()
            try:
                self.process.start()
            except EngineError as exc:
                self._failure = exc.message
                raise
            self._failure = None

    def stop(self) -> None:
        self.process.stop()

    def apply_configuration(self, values: dict[str, str]) -> bool:
        """Write the user's parameters and reload; True if some wait for a restart."""
        checked = parameters.check_values(self.name, self.version, values)
        with self._lifecycle:
            self._require_prepared()
            if write_user_config(self.pgdata, checked, self.owner):
                self.admin.reload()
            pending = self.admin.pending_restart()
        if pending:
            logger.info("parameters waiting for a restart: %s", ", ".join(pending))
        return bool(pending)

    def logs(self) -> dict[str, LogFile]:
        log = self.process.log_file
        return {} if log is None else {"postgresql": log}

    def resize(self, memory_mb: int) -> bool:
        """Rewrite the memory settings; shared_buffers only changes with a restart."""
        with self._lifecycle:
            self._require_prepared()
            if not write_config(self.pgdata, self._settings(memory_mb), self.owner):
                return False
            logger.info("restarting postgres for %d MB of memory", memory_mb)
            self.process.stop()
            self.process.start()
            return True
