"""PostgreSQL 15 as a Cellar engine.

:class:`PostgresEngine` is the RPC-facing facade: it orders the work and keeps the
service status; the process and its files are handled by ``postgres_process`` and
``postgres_config``, databases and users by ``postgres_admin``, backups by
``postgres_backup``, the continuous WAL archive (point-in-time recovery) by
``postgres_archive`` and streaming replication by ``postgres_replication``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Generator, Iterator
from pathlib import Path

from cellar.errors import CellarError, InvalidInput
from guestagent import safe_files
from guestagent.engines import postgres_admin
from guestagent.engines.base import SqlEngine
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
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_archive import FORMAT as ARCHIVE_FORMAT
from guestagent.engines.postgres_archive import PostgresArchive, checked_target_time
from guestagent.engines.postgres_backup import FORMAT, PostgresBackups
from guestagent.engines.postgres_config import (
    RECOVERY_SIGNAL,
    ServerSettings,
    clear_recovery,
    write_config,
    write_hba,
    write_recovery,
    write_replication,
    write_tls,
    write_user_config,
)
from guestagent.engines.postgres_process import PostgresProcess
from guestagent.engines.postgres_replication import PostgresReplication, checked_source
from guestagent.errors import EngineError, Unsupported
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

RESTORED_MARKER = ".cellar-restored"
# Finished WAL segments wait for the control plane beside the data volume, not on it: a
# full volume must not also stop archiving, or the server could not recycle its WAL.
ARCHIVE_DIR = "wal-archive"
RESTORE_ARCHIVE_DIR = "restore-archive"  # restored segments, until recovery has used them
PASSFILE = "replication.pgpass"  # a replica's password for its source, outside pgdata


@dataclasses.dataclass(frozen=True)
class PostgresOptions:
    """Where and as whom PostgreSQL runs; the defaults are the instance image's."""

    port: int = 5432
    socket_dir: Path = Path("/run/postgresql")
    listen_addresses: str = "*"
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    os_user: str | None = "postgres"
    start_timeout: float = 60.0
    recovery_timeout: float = 600.0  # the first start of a restored backup replays its WAL


class PostgresEngine(SqlEngine):
    """One PostgreSQL cluster in ``<data_dir>/pgdata``: prepared once, restarted on boot."""

    name = "postgresql"
    version = "15"
    process: PostgresProcess
    admin: PostgresAdmin
    replication: PostgresReplication

    def __init__(self, data_dir: Path, options: PostgresOptions | None = None) -> None:
        super().__init__(data_dir)
        self.options = options or PostgresOptions()
        self.owner = OsUser(self.options.os_user)
        self.pgdata = self.data_dir / "pgdata"
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
        self.backups = PostgresBackups(self.process, self.admin)
        self.archive = PostgresArchive(
            self.process,
            self.admin,
            archive_dir=self.data_dir.absolute().parent / ARCHIVE_DIR,
            restore_dir=self.data_dir.absolute() / RESTORE_ARCHIVE_DIR,
        )
        self.replication = PostgresReplication(
            self.process,
            self.admin,
            passfile=self.data_dir.absolute() / PASSFILE,
            archive_dir=self.archive.archive_dir,
            recovery_timeout=self.options.recovery_timeout,
            tls=self.tls,
        )
        self.restored_marker = self.data_dir / RESTORED_MARKER

    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        """The request with its parameters checked and its restore time as the server
        reads it."""
        configuration = self._check_parameters(dict(request.configuration))
        for database in request.databases:
            postgres_admin.checked_database(database)
        for user in request.users:
            postgres_admin.checked_user(user)
        target_time = checked_target_time(request.restore_time)
        if target_time and not request.restored:
            raise InvalidInput("a restore time needs a restored instance")
        source = None if request.replica_of is None else checked_source(request.replica_of)
        if source is not None and (target_time or not request.restored):
            raise InvalidInput("a replica starts on a whole restored backup of its primary")
        return dataclasses.replace(
            request, configuration=tuple(configuration.items()), restore_time=target_time
        )

    def _set_up(self, request: PrepareRequest) -> str:
        configuration = dict(request.configuration)
        source = request.replica_of
        if request.restored and not self.prepared():
            self._recover_restored(request.memory_mb, configuration, request.restore_time, source)
        else:
            self._ensure_running(request.memory_mb, configuration)
        databases, users = request.databases, request.users
        if source is not None or self.replication.standby_signalled():
            databases, users = (), ()  # a replica has its primary's
        created_dbs = sum(self.admin.create_database(d) for d in databases)
        created_users = sum(self.admin.create_user(u) for u in users)
        return f"{created_dbs} new databases, {created_users} new users"

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
        safe_files.make_dir(self.data_dir, self.owner)
        if self.pgdata.exists():
            logger.warning("removing %s left by an earlier initdb or restore", self.pgdata)
            safe_files.remove_tree(self.pgdata)

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
        self.archive.make_dirs()
        if not self.process.running():
            started = time.monotonic()
            self.process.start()
            logger.info("postgres ready in %.0f ms", (time.monotonic() - started) * 1000)
        elif changed:
            self.admin.reload()
            logger.info("reloaded the configuration (memory settings apply at the next start)")

    def _recover_restored(
        self,
        memory_mb: int,
        configuration: dict[str, str],
        target_time: str,
        source: ReplicationSource | None = None,
    ) -> None:
        """Start the server on a restored backup: check it against its manifest while it is
        untouched, write Cellar's configuration, and let it recover from its backup label,
        then through the restored archive files (up to ``target_time`` if given) until it
        is promoted; or, with ``source``, start it as a hot standby of ``source``. A retry
        after an interruption resumes the recovery in progress."""
        if not self.restored_marker.exists() or not self.process.initialized():
            raise EngineError("nothing was restored")
        untouched = (self.pgdata / "backup_label").exists()
        if untouched and not self.process.running():
            self.backups.verify(self.pgdata)
        write_config(self.pgdata, self._settings(memory_mb), self.owner)
        write_user_config(self.pgdata, configuration, self.owner)
        self.archive.make_dirs()
        if source is not None:
            self.replication.start_standby(source)
            self.archive.clear_restored()
            safe_files.remove(self.pgdata / "backup_manifest")
            return
        # The source's synchronous standbys are not this instance's: a commit would wait.
        write_replication(self.pgdata, "", self.owner)
        if untouched and (target_time or self.archive.restored_files()):
            write_recovery(self.pgdata, self.archive.restore_dir, target_time, self.owner)
        replaying = (self.pgdata / RECOVERY_SIGNAL).exists()
        started = time.monotonic()
        deadline = started + self.options.recovery_timeout
        try:
            self._replay(replaying, target_time, deadline)
        except EngineError:
            if not self.archive.ended_short_of(target_time):
                raise
            logger.info("no commit in the archive after %s: recovering to its end", target_time)
            write_recovery(self.pgdata, self.archive.restore_dir, "", self.owner)
            self._replay(replaying, "", deadline)
        # Promoted: the server has removed recovery.signal; a later start is a plain one.
        # The recovery targets only change with a restart: restart once so the running
        # server matches its files (else they would show as waiting for a restart).
        if clear_recovery(self.pgdata) and self.process.running():
            self.process.stop()
            self.process.start()
        self.archive.clear_restored()
        safe_files.remove(self.pgdata / "backup_manifest")
        logger.info(
            "recovered the restored backup%s in %.0f ms",
            f" and its archive up to {target_time or 'its end'}" if replaying else "",
            (time.monotonic() - started) * 1000,
        )

    def _replay(self, replaying: bool, target_time: str, deadline: float) -> None:
        """Start the server and, if it is to replay the archive, wait until it is promoted."""
        try:
            self.process.start(timeout=max(1.0, deadline - time.monotonic()))
            if replaying:
                self.archive.wait_until_promoted(target_time, deadline)
        except EngineError as exc:
            if not replaying or self.process.running():
                raise
            raise self.archive.recovery_failed(target_time, exc.message) from exc

    def _settings(self, memory_mb: int) -> ServerSettings:
        return ServerSettings(
            port=self.options.port,
            socket_dir=self.options.socket_dir,
            memory_mb=memory_mb,
            listen_addresses=self.options.listen_addresses,
            archive_dir=self.archive.archive_dir,
            tls=self.tls.files(),
        )

    def _write_tls(self) -> None:
        if self.process.initialized():
            write_tls(self.pgdata, self.tls.files(), self.owner)

    def _reload_tls(self) -> None:
        self.admin.reload()  # PostgreSQL reads its certificate again on a reload

    def backup(self, request: BackupRequest) -> Generator[BackupPiece, None, None]:
        """A full, online backup: pg_basebackup's tar (with the WAL it needs) as it comes."""
        if request.type == "incremental":
            raise Unsupported(
                "Cellar makes no PostgreSQL incremental backups (they would need WAL archiving"
                " of their own): restore a full backup and replay the WAL archive instead"
            )
        if request.type != "full":
            raise InvalidInput(f"unknown backup type {request.type!r}")
        self._require_prepared()
        if write_hba(self.pgdata, self.owner, self.tls.files()):
            self.admin.reload()
        logger.info("backup %s: streaming a full backup", request.backup_id)
        return self.backups.stream()

    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Unpack a full backup into the data directory of this new instance, as it arrives;
        then take the WAL archive files to replay after it, one per call."""
        if start.type == "archive":
            return self._restore_archive_file(start, chunks)
        if start.format != FORMAT:
            raise Unsupported(f"PostgreSQL restores {FORMAT!r} backups, not {start.format!r}")
        if start.type != "full":
            raise Unsupported(f"PostgreSQL restores full backups only, not {start.type!r} ones")
        if start.position != 0:
            raise InvalidInput(f"a full backup comes first (position 0), not at {start.position}")
        with self._lifecycle:
            self._require_new()
            started = time.monotonic()
            with self._building("restore"):
                received = self._unpack(chunks)
        logger.info("restored %d bytes in %.0f ms", received, (time.monotonic() - started) * 1000)
        return received

    def _restore_archive_file(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Keep one archived WAL file for the recovery ``prepare`` runs."""
        if start.format != ARCHIVE_FORMAT:
            raise Unsupported(
                f"PostgreSQL restores {ARCHIVE_FORMAT!r} archive files, not {start.format!r}"
            )
        if start.position < 1:
            raise InvalidInput(f"archive files follow the full backup, not at {start.position}")
        with self._lifecycle:
            self._require_new()
            if not self.restored_marker.exists():
                raise EngineError("restore the full backup (position 0) before archive files")
            with self._building("restore"):
                received = self.archive.receive(start.name, chunks)
        logger.info("restored archive file %s (%d bytes)", start.name, received)
        return received

    def _unpack(self, chunks: Iterator[bytes]) -> int:
        """Replace whatever an earlier start left with the backup in ``chunks``. The stream
        goes to a scratch directory renamed to ``pgdata`` once whole, so an interrupted
        restore never leaves a half-made cluster for the server to start on."""
        scratch = self.data_dir / "pgdata.restoring"
        self.process.cancel_initdb()
        if self.process.running():
            logger.warning("stopping postgres on the data a previous restore left")
            self.process.stop()
        self.restored_marker.unlink(missing_ok=True)
        self.archive.clear_restored()
        self._clear_data_dir()
        safe_files.remove_tree(scratch, ignore_errors=True)
        try:
            safe_files.make_dir(scratch, self.owner, mode=0o700, exist_ok=False)
            received = self.backups.unpack(chunks, scratch)
            safe_files.move(scratch, self.pgdata)
            marker = json.dumps({"format": FORMAT, "bytes": received}) + "\n"
            safe_files.write_file(self.restored_marker, marker.encode(), None, mode=0o644)
        except OSError as exc:
            raise EngineError(f"cannot unpack the backup: {exc.strerror or exc}") from exc
        finally:
            safe_files.remove_tree(scratch, ignore_errors=True)
        return received

    def list_archive(self, rotate: bool) -> list[ArchiveFile]:
        """The archived WAL files, by name; ``rotate`` first archives the current segment
        if it holds new WAL. None before the instance is prepared."""
        if not self.prepared():
            return []
        # A standby archives nothing and cannot switch segments.
        return self.archive.files(rotate and not self.replication.standby_signalled())

    def fetch_archive(self, name: str) -> Iterator[bytes]:
        """One archived WAL file in pieces of at most ``CHUNK_BYTES``."""
        return self.archive.fetch(name)

    def remove_archive(self, names: tuple[str, ...]) -> int:
        """Delete archived WAL files the control plane has stored; how many went."""
        return self.archive.remove(names)

    def check_consistency(self) -> ConsistencyReport:
        """pg_amcheck over the tables and indexes of every database (the server keeps
        serving; only shared locks are taken)."""
        self._require_prepared()
        return self.backups.check()

    def stop_writes(self) -> ReplicationState:
        """Shut the primary down cleanly; its shutdown checkpoint is the final position.
        It stays down until ``promote``'s replica takes over and ``follow`` or ``start``."""
        with self._lifecycle:
            self._require_prepared()
            return self.replication.stop_writes()

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        with self._lifecycle:
            self._require_prepared()
            return self.replication.promote(wait_for_position, timeout)

    def follow(self, source: ReplicationSource) -> None:
        """Stream from ``source``; a former primary is rewound first (pg_rewind)."""
        source = checked_source(source)
        with self._lifecycle:
            self._require_prepared()
            self.replication.follow(source)

    def _apply_parameters(self, values: dict[str, str]) -> list[str]:
        """Write the user's parameters and reload; some may wait for a restart."""
        if write_user_config(self.pgdata, values, self.owner):
            self.admin.reload()
        return self.admin.pending_restart()

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
