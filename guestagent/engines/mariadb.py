"""MariaDB 10.11 as a Cellar engine.

:class:`MariadbEngine` is the RPC-facing facade: it orders the work and keeps the
service status; the process is handled by ``mariadb_process``, the option files by
``mariadb_config``, databases, users and variables by ``mariadb_admin``, backups, restores
and checks by ``mariadb_backup``, the binary log archive and its replay by ``mariadb_archive``,
sources, replicas and their switchover by ``mariadb_replication``.
The server's files live in ``<data_dir>/mysql``, its binary logs in ``<data_dir>/binlog``, its
option files and the marker next to them, a restore's unpacked backups in
``<data_dir>/restore`` and its archive files in ``<data_dir>/restore-archive``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from cellar import parameters
from cellar.errors import CellarError, InvalidInput
from guestagent import safe_files
from guestagent.engines import mariadb_admin
from guestagent.engines.base import SqlEngine
from guestagent.engines.mariadb_admin import MariadbAdmin
from guestagent.engines.mariadb_archive import FORMAT as ARCHIVE_FORMAT
from guestagent.engines.mariadb_archive import (
    MariadbArchive,
    checked_name,
    checked_restore_time,
    read_binlog_position,
)
from guestagent.engines.mariadb_backup import MariadbBackups, checked_parent
from guestagent.engines.mariadb_config import (
    BINLOG_DIR,
    MB,
    SETTINGS_FILE,
    USER_FILE,
    ServerSettings,
    buffer_pool_mb,
    read_user_settings,
    write_config,
    write_tls,
    write_user_config,
)
from guestagent.engines.mariadb_process import MariadbProcess
from guestagent.engines.mariadb_replication import (
    MariadbReplication,
    checked_source,
    read_backup_gtid,
)
from guestagent.engines.messages import (
    ArchiveFile,
    BackupPiece,
    BackupRequest,
    ConsistencyReport,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
)
from guestagent.engines.os_user import OsUser
from guestagent.errors import EngineDown, EngineError
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

RULES = parameters.rules_for("mariadb", "10.11")
TMP_DIR = "tmp"  # the server's tmpdir, in the data folder


@dataclasses.dataclass(frozen=True)
class MariadbOptions:
    """Where and as whom MariaDB runs; the defaults are the instance image's."""

    port: int = 3306
    socket: Path = Path("/run/mysqld/mysqld.sock")
    bind_address: str = "*"
    basedir: Path = Path("/usr")  # holds sbin/mariadbd and bin/mariadb-install-db
    os_user: str | None = "mysql"
    start_timeout: float = 60.0


class MariadbEngine(SqlEngine):
    """One MariaDB server in ``<data_dir>/mysql``: prepared once, restarted on boot."""

    name = "mariadb"
    version = "10.11"
    process: MariadbProcess
    admin: MariadbAdmin
    replication: MariadbReplication

    def __init__(self, data_dir: Path, options: MariadbOptions | None = None) -> None:
        super().__init__(data_dir)
        self.options = options or MariadbOptions()
        self.owner = OsUser(self.options.os_user)
        self.datadir = self.data_dir / "mysql"
        self.process = MariadbProcess(
            basedir=self.options.basedir,
            datadir=self.datadir,
            defaults_file=self.data_dir / SETTINGS_FILE,
            socket=self.options.socket,
            port=self.options.port,
            owner=self.owner,
            start_timeout=self.options.start_timeout,
            log_file=LogFile(self.data_dir / "log" / "mariadb.log"),
            # on the data volume: the container's /tmp is small and in memory
            tmpdir=self.data_dir / TMP_DIR,
        )
        self.admin = MariadbAdmin(self.process)
        self.backups = MariadbBackups(
            self.process, self.data_dir, self.data_dir / SETTINGS_FILE, self.owner
        )
        self.archive = MariadbArchive(
            # beside the data volume, not on it: a full volume must not block the binary log
            self.process,
            self.admin,
            self.data_dir.parent / BINLOG_DIR,
            self.data_dir,
            self.owner,
        )
        self.replication = MariadbReplication(self.admin, self.data_dir, self.owner, self.tls)

    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        """The request with its parameters checked (the restore time and source too)."""
        configuration = self._check_parameters(dict(request.configuration))
        for database in request.databases:
            mariadb_admin.checked_database(database)
        for user in request.users:
            mariadb_admin.checked_user(user)
        if checked_restore_time(request.restore_time) is not None and not request.restored:
            raise InvalidInput("a restore time needs a restored instance")
        self._checked_replica_of(request)
        return dataclasses.replace(request, configuration=tuple(configuration.items()))

    def _set_up(self, request: PrepareRequest) -> str:
        source = request.replica_of
        replay = request.restored and not self.prepared()
        if replay:
            self._recover_restored(request.memory_mb)
            if source is not None:
                self.replication.persist_replica()  # read-only from its first start
        self._ensure_running(request.memory_mb, dict(request.configuration))
        if replay and source is not None:
            self.replication.seed(source, read_backup_gtid(self.backups.binlog_info))
        elif replay:
            position = read_binlog_position(self.backups.binlog_info)
            self.archive.replay(position, checked_restore_time(request.restore_time))
        databases, users = request.databases, request.users
        if source is not None and (databases or users):
            logger.warning("a replica gets its databases and users from its source")
            databases, users = (), ()
        created_dbs = sum(self.admin.create_database(d) for d in databases)
        created_users = sum(self.admin.create_user(u) for u in users)
        return f"{created_dbs} new databases, {created_users} new users"

    def _after_prepared(self, request: PrepareRequest) -> None:
        if request.restored:
            self.backups.clear_staging()

    def _checked_replica_of(self, request: PrepareRequest) -> ReplicationSource | None:
        """The source a restored replica starts from (None for a primary), or InvalidInput."""
        if request.replica_of is None:
            return None
        if not request.restored:
            raise InvalidInput("a replica starts from a restored backup of its source")
        if request.restore_time or self.archive.restored():
            raise InvalidInput("a replica replays nothing: its source sends what follows")
        return checked_source(request.replica_of)

    def warm_up(self) -> None:
        """Start mariadb-install-db at once on a new volume, overlapping the agent's start."""
        with self._lifecycle:
            if (
                self.prepared()
                or self.backups.staged()
                or self.process.initialized()
                or self.process.install_pending()
            ):
                return
            try:
                self._clear_datadir()
                self.process.start_install()
            except (OSError, CellarError) as exc:
                logger.warning("early install-db not started (prepare will run it): %s", exc)

    def _clear_datadir(self) -> None:
        safe_files.make_dir(self.data_dir, self.owner)
        if self.datadir.exists():
            logger.warning("removing %s left by an interrupted install-db", self.datadir)
            safe_files.remove_tree(self.datadir)
        self.archive.clear()

    def _drop_early_install(self) -> None:
        """Wait for warm_up's install-db, if any, and remove what it made: a restore fills
        the data directory instead."""
        if self.process.install_pending():
            try:
                self.process.finish_install()
            except CellarError as exc:
                logger.info("early install-db failed, not needed for a restore: %s", exc.message)
        if not self.backups.staged() and self.datadir.exists():
            self.process.stop()  # left running by a failed prepare
            safe_files.remove_tree(self.datadir)
            self.archive.clear()

    def _recover_restored(self, memory_mb: int) -> None:
        """Apply the restored chain and make it the data directory (prepare, restored=True)."""
        if not self.backups.staged():
            raise EngineError("nothing was restored: restore a full backup first")
        self._drop_early_install()
        started = time.monotonic()
        self.backups.recover(memory_mb)
        logger.info("restored data recovered in %.0f ms", (time.monotonic() - started) * 1000)

    def _ensure_running(self, memory_mb: int, configuration: dict[str, str]) -> None:
        if self.process.install_pending():
            try:
                self.process.finish_install()
            except CellarError as exc:
                logger.warning("early install-db failed, running it again: %s", exc.message)
        if not self.process.initialized():
            self._clear_datadir()
            self.process.install()
        previous = read_user_settings(self.data_dir / USER_FILE)
        write_config(self.data_dir, self._settings(memory_mb), self.owner)
        write_user_config(self.data_dir, configuration, self.owner)
        self.archive.make_folder()
        if not self.process.running():
            started = time.monotonic()
            self.process.start()
            logger.info("mariadb ready in %.0f ms", (time.monotonic() - started) * 1000)
        else:
            self._apply_live(configuration, previous)
            self._size_buffer_pool(memory_mb)

    def _settings(self, memory_mb: int) -> ServerSettings:
        return ServerSettings(
            datadir=self.datadir,
            socket=self.options.socket,
            port=self.options.port,
            bind_address=self.options.bind_address,
            memory_mb=memory_mb,
            binlog_dir=self.archive.binlog_dir,
            tmpdir=self.process.tmpdir,
            tls=self.tls.files(),
        )

    def _write_tls(self) -> None:
        if self.data_dir.exists():
            write_tls(self.data_dir, self.tls.files(), self.owner)

    def _reload_tls(self) -> None:
        """Read the certificate again and apply the policy to new connections."""
        files = self.tls.files()
        if files is None:
            return  # no certificate any more: the next start serves without TLS
        required = "ON" if files.required else "OFF"
        with self.admin.connect() as cursor:
            cursor.execute("FLUSH SSL")
            cursor.execute(f"SET GLOBAL require_secure_transport = {required}")

    def backup(self, request: BackupRequest) -> Iterator[BackupPiece]:
        """An online mariabackup stream (xbstream); writes go on while it runs."""
        self._require_prepared()
        parent = checked_parent(request)
        if not self.process.running():
            raise EngineDown("mariadb is not running")
        if parent and int(parent) > self.admin.innodb_lsn():
            raise InvalidInput("the parent checkpoint is ahead of this server's log: wrong chain")
        return self.backups.stream(request)

    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Unpack one backup of a chain, or keep one archive file after them, while it
        arrives; prepare(restored=True) follows."""
        with self._lifecycle:
            self._require_new()
            if start.type == "archive":
                return self._restore_archive(start, chunks)
            if self.archive.restored():
                raise InvalidInput("archive files were restored: the backups come before them")
            self._drop_early_install()
            return self.backups.unpack(start, chunks)

    def _restore_archive(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        name = checked_name(start.name)
        if start.format != ARCHIVE_FORMAT:
            raise InvalidInput(f"MariaDB archive files are {ARCHIVE_FORMAT}, not {start.format!r}")
        positions = self.backups.positions()
        if not positions:
            raise InvalidInput(
                "restore the full backup (and its incrementals) before archive files"
            )
        if start.position <= positions[-1]:
            raise InvalidInput(
                f"archive file {name} at position {start.position}: archive files follow the "
                f"backups of the chain (positions 0 to {positions[-1]})"
            )
        return self.archive.store(name, chunks)

    def list_archive(self, rotate: bool) -> list[ArchiveFile]:
        """The closed binary logs, oldest first; none before the instance is prepared."""
        if not self.prepared():
            return []
        return self.archive.list_closed(rotate)

    def fetch_archive(self, name: str) -> Iterator[bytes]:
        """One closed binary log's bytes; InvalidInput for a bad, missing or open file."""
        checked_name(name)
        self._require_prepared()
        return self.archive.fetch(name)

    def remove_archive(self, names: tuple[str, ...]) -> int:
        """Purge the oldest closed binary logs among ``names``; how many went."""
        for name in names:
            checked_name(name)
        if not self.prepared():
            return 0
        return self.archive.remove(names)

    def check_consistency(self) -> ConsistencyReport:
        self._require_prepared()
        if not self.process.running():
            raise EngineDown("mariadb is not running")
        return self.backups.check()

    def stop_writes(self) -> ReplicationState:
        self._require_prepared()
        return self.replication.stop_writes()

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        self._require_prepared()
        return self.replication.promote(wait_for_position, timeout)

    def follow(self, source: ReplicationSource) -> None:
        self._require_prepared()
        self.replication.follow(source)

    def _start_server(self) -> None:
        self.archive.make_folder()
        self.process.start()

    def _apply_parameters(self, values: dict[str, str]) -> list[str]:
        """Write the user's parameters and set the dynamic ones live (when running)."""
        previous = read_user_settings(self.data_dir / USER_FILE)
        write_user_config(self.data_dir, values, self.owner)
        if not self.process.running():
            return []
        return self._apply_live(values, previous)

    def _apply_live(self, values: dict[str, str], previous: dict[str, str]) -> list[str]:
        """SET GLOBAL the dynamic values (defaults for dropped ones); the static ones pending."""
        pending = []
        for name in sorted(set(values) | set(previous)):
            rule = RULES.get(name)
            if rule is None:
                continue
            value = values.get(name)
            if rule.dynamic:
                self.admin.set_global(name, None if value is None else _sql_value(rule, value))
            elif value is None or not _same(rule, value, self.admin.variable(name)):
                pending.append(name)
        return pending

    def resize(self, memory_mb: int) -> bool:
        """Size the buffer pool for ``memory_mb``, live and in the option file; never restarts."""
        with self._lifecycle:
            self._require_prepared()
            write_config(self.data_dir, self._settings(memory_mb), self.owner)
            if self.process.running():
                self._size_buffer_pool(memory_mb)
        return False

    def _size_buffer_pool(self, memory_mb: int) -> None:
        size = buffer_pool_mb(memory_mb) * MB
        if self.admin.variable("innodb_buffer_pool_size") != str(size):
            self.admin.set_global("innodb_buffer_pool_size", size)
            logger.info("innodb_buffer_pool_size is now %d MB", size // MB)


def _sql_value(rule: parameters.Rule, value: str) -> str | int | float:
    if rule.type == "integer":
        return int(value)
    if rule.type == "float":
        return float(value)
    return value.upper() if rule.type == "boolean" else value


def _same(rule: parameters.Rule, value: str, running: str | None) -> bool:
    """True if the running value of a parameter already is ``value``."""
    if running is None:
        return False
    if rule.type == "boolean":
        return (value == "on") == (running.upper() in ("1", "ON"))
    if rule.type in ("integer", "float"):
        try:
            return float(value) == float(running)
        except ValueError:
            return False
    return value.lower() == running.lower()
