"""Redis 7 as a Cellar engine.

:class:`RedisEngine` is the RPC-facing facade: it orders the work and keeps the service
status; the process is handled by ``redis_process``, the files by ``redis_config``, users
and live settings by ``redis_admin``, backups and restores by ``redis_backup``, roles and
switchovers by ``redis_replication``. Redis has no named databases: those calls answer
Unsupported. Access is by ACL users only; the ``default`` user stays off until root is
enabled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.base import Engine
from guestagent.engines.messages import (
    BackupPiece,
    BackupRequest,
    ConsistencyReport,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.redis_admin import RedisAdmin, checked_user, load_or_create_password
from guestagent.engines.redis_backup import FORMAT, RedisBackups
from guestagent.engines.redis_config import (
    CONFIG_FILE,
    DEFAULTS,
    RULES,
    ServerSettings,
    maxmemory_bytes,
    redis_values,
    write_admin_acl,
    write_config,
    write_tls,
    write_user_config,
)
from guestagent.engines.redis_process import RedisProcess
from guestagent.engines.redis_replication import LINK_TIMEOUT, RedisReplication, checked_source
from guestagent.errors import EngineError, Unsupported
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

ADMIN_LOGIN_FILE = ".cellar-admin-password"
NO_DATABASES = "redis has no named databases (use the numbered ones, SELECT 0-15)"


@dataclasses.dataclass(frozen=True)
class RedisOptions:
    """Where and as whom Redis runs; the defaults are the instance image's."""

    port: int = 6379
    unix_socket: Path = Path("/run/redis/redis.sock")
    bind: str = "* -::*"  # every IPv4 address, and IPv6 ones where there are
    binary: Path = Path("/usr/bin/redis-server")
    check_rdb_binary: Path = Path("/usr/bin/redis-check-rdb")
    os_user: str | None = "redis"
    start_timeout: float = 30.0
    replica_link_timeout: float = LINK_TIMEOUT  # a new replica's prepare waits for its link


class RedisEngine(Engine):
    """One Redis server whose files live in ``data_dir``: prepared once, restarted on boot."""

    name = "redis"
    version = "7.0"
    process: RedisProcess
    admin: RedisAdmin
    replication: RedisReplication

    def __init__(self, data_dir: Path, options: RedisOptions | None = None) -> None:
        super().__init__(data_dir)
        self.options = options or RedisOptions()
        self.owner = OsUser(self.options.os_user)
        self.redis_dir = self.data_dir / "redis"
        self.admin = RedisAdmin(self.options.unix_socket, self.data_dir / ADMIN_LOGIN_FILE)
        self.process = RedisProcess(
            binary=self.options.binary,
            config_file=self.data_dir / CONFIG_FILE,
            pid_file=self.redis_dir / "redis.pid",
            owner=self.owner,
            ping=self.admin.ping,
            shutdown=self.admin.shutdown,
            start_timeout=self.options.start_timeout,
            log_file=LogFile(self.data_dir / "log" / "redis.log"),
        )
        self.backups = RedisBackups(
            self.admin, self.data_dir, self.redis_dir, self.owner, self.options.check_rdb_binary
        )
        self.replication = RedisReplication(self.admin, self.data_dir, self.owner, tls=self.tls)

    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        """The request with its parameters checked and in Redis's own spelling."""
        if request.databases:
            raise Unsupported(NO_DATABASES)
        configuration = self._check_parameters(dict(request.configuration))
        for user in request.users:
            checked_user(user)
        source = None if request.replica_of is None else checked_source(request.replica_of)
        if source is not None and request.restored:
            raise Unsupported("a Redis replica is seeded by its primary's full sync, not a restore")
        return dataclasses.replace(request, configuration=tuple(configuration.items()))

    def _refuse_prepare(self, request: PrepareRequest) -> None:
        if request.restored and not self.prepared() and not self.backups.restored():
            raise EngineError("nothing was restored")

    def _set_up(self, request: PrepareRequest) -> str:
        configuration = dict(request.configuration)
        source = request.replica_of
        if request.restored and not self.prepared():
            self._recover_restored(request.memory_mb, configuration)
        else:
            self._ensure_running(request.memory_mb, configuration, source)
        created = sum(self.admin.create_user(u) for u in request.users)
        if source is not None:
            self.replication.follow(source)
            self.replication.wait_for_link(self.options.replica_link_timeout)
        return f"{created} new users"

    def _after_prepared(self, request: PrepareRequest) -> None:
        self.backups.forget_restore()

    def _ensure_running(
        self, memory_mb: int, configuration: dict[str, str], source: ReplicationSource | None
    ) -> None:
        """Write the files and start the server (a replica of ``source`` from its start),
        or apply them live to a running one."""
        self._make_dirs()
        write_config(self._settings(memory_mb), self.owner)
        write_user_config(self.data_dir, configuration, self.owner)
        if source is not None:
            self.replication.persist(source)
        if self.process.running():
            self.admin.config_set({"maxmemory": str(maxmemory_bytes(memory_mb))})
            self._apply_live(configuration)
            return
        self._run_server()

    def _recover_restored(self, memory_mb: int, configuration: dict[str, str]) -> None:
        """Start on the restored RDB, then turn the append-only file on if wanted, and
        recreate the restored users.

        The server starts with the append-only file off: with it on, Redis 7 would
        ignore the RDB and start empty.
        """
        self._make_dirs()
        write_config(self._settings(memory_mb), self.owner)
        write_user_config(self.data_dir, configuration, self.owner)
        if not self.process.running():
            self._run_server(overrides=("--appendonly", "no"))
        if (DEFAULTS | configuration)["appendonly"] == "yes":
            self.backups.enable_aof()
        self.backups.recreate_users()

    def _make_dirs(self) -> None:
        """The data directory and Redis's own folders, owned by Redis's OS user."""
        safe_files.make_dir(self.data_dir, self.owner)
        safe_files.make_dir(self.redis_dir, self.owner)
        socket_dir = self.options.unix_socket.parent
        if not socket_dir.exists():
            safe_files.make_dir(socket_dir, self.owner, exist_ok=False)

    def _run_server(self, overrides: tuple[str, ...] = ()) -> None:
        """Start the server with the agent's ACL user in place, and wait until it answers."""
        password = load_or_create_password(self.data_dir / ADMIN_LOGIN_FILE)
        write_admin_acl(self.data_dir, password, self.owner)
        started = time.monotonic()
        self.process.start(overrides=overrides)
        logger.info("redis ready in %.0f ms", (time.monotonic() - started) * 1000)

    def _settings(self, memory_mb: int) -> ServerSettings:
        return ServerSettings(
            port=self.options.port,
            bind=self.options.bind,
            unix_socket=self.options.unix_socket,
            data_dir=self.data_dir,
            redis_dir=self.redis_dir,
            memory_mb=memory_mb,
            tls=self.tls.files(),
        )

    def _write_tls(self) -> None:
        if (self.data_dir / CONFIG_FILE).exists():
            write_tls(self.data_dir, self.tls.files(), self.options.port, self.owner)

    def _reload_tls(self) -> None:
        """Have the running server read its renewed certificate (it reads the files when
        they are set); a server started without TLS takes it up at its next start."""
        files = self.tls.files()
        if files is not None and self.admin.config_get(["tls-port"])["tls-port"] not in ("", "0"):
            self.admin.config_set(dict(tls_settings.redis_reload(files)))

    def _apply_live(self, configuration: dict[str, str]) -> list[str]:
        """Set the dynamic parameters that differ from the running ones; the static ones
        that differ are returned (they wait for a restart)."""
        wanted = DEFAULTS | configuration
        running = self.admin.config_get(sorted(wanted))
        changed = {name: value for name, value in wanted.items() if running[name] != value}
        self.admin.config_set({n: v for n, v in changed.items() if RULES[n].dynamic})
        return sorted(n for n in changed if not RULES[n].dynamic)

    def _no_databases(self) -> Unsupported:
        return Unsupported(NO_DATABASES)

    def backup(self, request: BackupRequest) -> Iterator[BackupPiece]:
        """A BGSAVE snapshot and the users, as one tar stream (closing it early cleans up)."""
        if request.type != "full":
            raise Unsupported("Redis has no incremental backups")
        self._require_prepared()
        return self.backups.stream()

    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Unpack a full backup into this fresh instance, for ``prepare(restored=True)``."""
        if start.type != "full" or start.position != 0:
            raise Unsupported("Redis has no incremental backups")
        if start.format != FORMAT:
            raise Unsupported(f"Redis restores {FORMAT} backups, not {start.format!r}")
        with self._lifecycle:
            self._require_new()
            if self.process.running():
                self.stop()
            self._make_dirs()
            return self.backups.restore(chunks)

    def check_consistency(self) -> ConsistencyReport:
        """redis-check-rdb over a snapshot saved now."""
        self._require_prepared()
        return self.backups.check()

    def stop_writes(self) -> ReplicationState:
        """CLIENT PAUSE WRITE for a bounded time; ``follow`` or ``promote`` ends it."""
        self._require_prepared()
        return self.replication.stop_writes()

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        with self._lifecycle:
            self._require_prepared()
            return self.replication.promote(wait_for_position, timeout)

    def follow(self, source: ReplicationSource) -> None:
        """REPLICAOF ``source``: Redis resyncs the data itself (partially if it can)."""
        with self._lifecycle:
            self._require_prepared()
            self.replication.follow(source)

    def _start_server(self) -> None:
        if not self.process.running():
            self._make_dirs()
            self._run_server()

    def stop(self) -> None:
        super().stop()
        self.admin.close()

    def _check_parameters(self, values: dict[str, str]) -> dict[str, str]:
        return redis_values(super()._check_parameters(values))

    def _apply_parameters(self, values: dict[str, str]) -> list[str]:
        """Write the user's parameters and set the dynamic ones live."""
        write_user_config(self.data_dir, values, self.owner)
        return self._apply_live(values)

    def resize(self, memory_mb: int) -> bool:
        """Rewrite maxmemory and set it live; Redis never needs a restart for it."""
        with self._lifecycle:
            self._require_prepared()
            write_config(self._settings(memory_mb), self.owner)
            self.admin.config_set({"maxmemory": str(maxmemory_bytes(memory_mb))})
        logger.info("maxmemory follows %d MB of memory", memory_mb)
        return False
