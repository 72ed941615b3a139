"""The common frame of every engine the guest agent can run.

Each engine module (``postgres.py``, ``mariadb.py``, ``redis.py``) subclasses
:class:`Engine` (through :class:`SqlEngine` where the server keeps named databases); the
server only ever talks to this class. The messages its calls take are in ``messages``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from cellar import parameters
from cellar.errors import CellarError
from guestagent import safe_files
from guestagent.engines.handlers import Admin, Replication, SqlAdmin
from guestagent.engines.messages import (
    ArchiveFile,
    BackupPiece,
    BackupRequest,
    ConsistencyReport,
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    EnableReplicationRequest,
    GrantAccessRequest,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
    RevokeAccessRequest,
    ServiceStatus,
    StatusReport,
    User,
    VolumeUsage,
)
from guestagent.engines.metrics import CGROUP_DIR, container_memory
from guestagent.engines.server_process import ServerProcess
from guestagent.engines.tls_files import EngineTls
from guestagent.errors import EngineError, NotPrepared, Unsupported
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

MARKER = ".cellar-prepared"  # in the data directory of a prepared instance


class Engine(abc.ABC):
    """One database engine inside an instance container.

    Constructed as ``EngineClass(data_dir)``, with engine-specific options as keywords.
    Calls may arrive concurrently from the server's threads; what must be serialised
    (``prepare``, ``start``, restores, configuration changes, and the role changes an
    engine says) holds ``_lifecycle``. Methods raise ``cellar.errors.InvalidInput`` for
    bad names and ``guestagent.errors`` otherwise.

    The frame every engine shares is here: ``prepare``'s lock, status and marker,
    ``status``, ``start`` and ``stop``, ``apply_configuration``'s, and the user and
    replication calls, which go to ``admin`` and ``replication`` once the instance is
    prepared. An engine sets ``process``, ``admin`` and ``replication`` in its
    constructor and fills in :meth:`_check_prepare` and :meth:`_set_up`.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    process: ServerProcess
    admin: Admin
    replication: Replication

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.marker = self.data_dir / MARKER  # written once the instance is prepared
        self._lifecycle = threading.Lock()
        self._busy: str | None = None  # what holds the lifecycle lock, while BUILDING
        self._failure: str | None = None  # why the last prepare or start failed
        self.tls = EngineTls.off()  # the agent gives it the worker's files (tls_files)
        self.cgroup_dir = CGROUP_DIR  # the container's cgroup, where its memory use is read

    def prepared(self) -> bool:
        return self.marker.exists()

    def use_tls(self, source: Path) -> None:
        """Serve TLS with the certificate the worker puts in ``source`` (see tls_files)."""
        self.tls.source = source
        self.tls.owner = getattr(self, "owner", self.tls.owner)

    def refresh_tls(self) -> bool:
        """Take up a renewed certificate or a changed TLS policy: write the engine's TLS
        settings and have a running engine reload them; True if anything changed."""
        with self._lifecycle:
            if not self.tls.sync():
                return False
            self._write_tls()
            if self.prepared() and self.process.running():
                self._reload_tls()
            return True

    def _write_tls(self) -> None:  # noqa: B027  (optional hook: engines without TLS)
        """Write the engine's TLS settings from ``self.tls`` where it has a configuration."""

    def _reload_tls(self) -> None:  # noqa: B027  (optional hook: engines without TLS)
        """Make the running engine read its TLS settings and files again."""

    def _write_marker(self) -> None:
        if self.marker.exists():
            return
        text = json.dumps({"engine": self.name, "version": self.version}) + "\n"
        safe_files.write_file(self.marker, text.encode(), None, mode=0o644, scratch=MARKER + ".new")

    def _require_prepared(self) -> None:
        if not self.prepared():
            raise NotPrepared("the instance is not prepared yet")

    def _require_new(self) -> None:
        """Refuse to restore into a prepared instance: a restore needs a new one."""
        if self.prepared():
            raise EngineError("the instance already holds data: restore needs a new instance")

    @contextlib.contextmanager
    def _building(self, work: str) -> Iterator[None]:
        """Report BUILDING ("<work> is running") while the block runs, and clear an earlier
        failure; the caller holds the lifecycle lock."""
        self._busy = f"{work} is running"
        self._failure = None
        try:
            yield
        finally:
            self._busy = None

    def prepare(self, request: PrepareRequest) -> ServiceStatus:
        """Set up the engine on first use, or make sure it is set up; returns when healthy.

        The request is checked before anything changes; a failure after that is the
        FAILED status's detail until the next ``prepare`` or ``start``.
        """
        request = self._check_prepare(request)
        with self._lifecycle:
            self._refuse_prepare(request)
            started = time.monotonic()
            with self._building("prepare"):
                try:
                    created = self._set_up(request)
                    self._write_marker()
                    self._after_prepared(request)
                except CellarError as exc:
                    self._failure = exc.message
                    raise
                except Exception as exc:
                    self._failure = f"prepare failed: {type(exc).__name__}"
                    logger.exception("prepare failed")
                    raise EngineError(self._failure) from exc
        logger.info("prepared in %.0f ms (%s)", (time.monotonic() - started) * 1000, created)
        return ServiceStatus.HEALTHY

    @abc.abstractmethod
    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        """``request`` as the engine will act on it (values checked and normalised), or
        InvalidInput (Unsupported) for what it cannot do; nothing has changed yet."""

    def _refuse_prepare(self, request: PrepareRequest) -> None:  # noqa: B027  (optional hook)
        """Raise where the instance's state rules ``request`` out, the status unchanged
        (called under the lifecycle lock; most engines refuse nothing here)."""

    @abc.abstractmethod
    def _set_up(self, request: PrepareRequest) -> str:
        """``prepare``'s own work on a checked request, until the server is healthy with
        its databases and users; returns what it created, for the log."""

    def _after_prepared(self, request: PrepareRequest) -> None:  # noqa: B027  (optional hook)
        """Drop what only the set-up needed, once the marker is written."""

    def status(self) -> StatusReport:
        """Report what the engine is doing now; cheap, never blocks on ``prepare``."""
        busy = self._busy
        if busy is not None:
            return StatusReport(ServiceStatus.BUILDING, busy)
        if self._failure is not None:
            return StatusReport(ServiceStatus.FAILED, self._failure)
        if not self.prepared():
            return StatusReport(ServiceStatus.NEW)
        crashed = self.process.unexpected_exit()
        if crashed is not None:
            return StatusReport(ServiceStatus.FAILED, crashed)
        if not self.process.running():
            return StatusReport(ServiceStatus.SHUTDOWN, f"{self.process.name} is not running")
        try:
            self.admin.ping()
        except EngineError as exc:
            return StatusReport(ServiceStatus.SHUTDOWN, exc.message)
        return StatusReport(ServiceStatus.HEALTHY)

    def start(self) -> None:
        """Start a prepared engine (after a container restart); no-op when running."""
        with self._lifecycle:
            self._require_prepared()
            try:
                self._start_server()
            except EngineError as exc:
                self._failure = exc.message
                raise
            self._failure = None

    def _start_server(self) -> None:
        """``start``'s own work, on a prepared instance."""
        self.process.start()

    def stop(self) -> None:
        """Stop the engine quickly and cleanly; no-op when it is not running."""
        self.process.stop()

    def restart(self) -> ServiceStatus:
        """Stop the engine cleanly and start it again (prepared engines only)."""
        self.stop()
        self.start()
        return self.status().status

    def logs(self) -> dict[str, LogFile]:
        """The logs this engine keeps, by name: its server's, under the engine's name."""
        log = self.process.log_file
        return {} if log is None else {self.name: log}

    def create_user(self, request: User) -> bool:
        """Create a user and grant it its databases; False when it already existed."""
        self._require_prepared()
        return self.admin.create_user(request)

    def list_users(self) -> list[User]:
        """The users' accounts, without the engine's own, passwords left empty."""
        self._require_prepared()
        return self.admin.list_users()

    def delete_user(self, request: DeleteUserRequest) -> bool:
        """Drop a user and what it owns; False when it did not exist."""
        self._require_prepared()
        return self.admin.delete_user(request)

    def count_sessions(self, request: CountSessionsRequest) -> int:
        """How many client connections the user has open now (0 for an unknown user)."""
        self._require_prepared()
        return self.admin.count_sessions(request)

    def change_password(self, request: User) -> bool:
        """Give an existing user a new password; False when the user does not exist."""
        self._require_prepared()
        return self.admin.change_password(request)

    def enable_root(self, password: str) -> str:
        """Let the superuser log in over the network with ``password``; returns its name."""
        self._require_prepared()
        return self.admin.enable_root(password)

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        """The running engine's values of ``names`` (those it knows)."""
        self._require_prepared()
        return self.admin.get_configuration(names)

    def disable_root(self) -> bool:
        """Take the superuser's network login away; False if it had none."""
        self._require_prepared()
        return self.admin.disable_root()

    def metrics(self) -> dict[str, float]:
        """The engine's own counters and readings by the names of ``metrics``, with the
        container's memory and the data volume's usage; a name it cannot read is left out."""
        self._require_prepared()
        values = self.admin.metrics()
        memory = container_memory(self.cgroup_dir)
        if memory is not None:
            values["memory_bytes"] = memory
        usage = self.volume_usage()
        if usage.total_bytes:
            values["volume_used_bytes"] = float(usage.used_bytes)
        return values

    def resize(self, memory_mb: int) -> bool:
        """Apply a new memory size to the derived settings; True if the engine restarted."""
        raise Unsupported(f"{self.name} cannot be resized yet")

    def apply_configuration(self, values: dict[str, str]) -> bool:
        """Make ``values`` the user parameters; True if some need a restart to apply."""
        checked = self._check_parameters(values)
        with self._lifecycle:
            self._require_prepared()
            pending = self._apply_parameters(checked)
        if pending:
            logger.info("parameters waiting for a restart: %s", ", ".join(pending))
        return bool(pending)

    def _check_parameters(self, values: dict[str, str]) -> dict[str, str]:
        """``values`` checked against the engine's parameter rules, as the engine writes
        them; InvalidInput for an unknown name or a bad value."""
        return parameters.check_values(self.name, self.version, values)

    def _apply_parameters(self, values: dict[str, str]) -> list[str]:
        """Write checked user parameters and apply what can be applied now (under the
        lifecycle lock, prepared); returns the names that wait for a restart."""
        raise Unsupported(f"{self.name} has no configuration parameters yet")

    def volume_usage(self) -> VolumeUsage:
        """How full the file system of the data directory is (zeros if it cannot be read)."""
        try:
            stats = os.statvfs(self.data_dir)
        except OSError:
            return VolumeUsage()
        total = stats.f_blocks * stats.f_frsize
        return VolumeUsage(used_bytes=total - stats.f_bfree * stats.f_frsize, total_bytes=total)

    def warm_up(self) -> None:  # noqa: B027  (optional hook: most engines need none)
        """Start slow, input-independent work early (called once, before serving)."""

    def _no_databases(self) -> Unsupported:
        """The error of a database call on an engine without named databases."""
        return Unsupported(f"{self.name} has no named databases")

    def create_database(self, request: Database) -> bool:
        """Create a database; False when it already existed."""
        raise self._no_databases()

    def list_databases(self) -> list[Database]:
        """The users' databases, without the engine's own."""
        raise self._no_databases()

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        """Drop a database even with open connections; False when it did not exist."""
        raise self._no_databases()

    def grant_access(self, request: GrantAccessRequest) -> None:
        """Give a user every right on each database; InvalidInput if one does not exist."""
        raise self._no_databases()

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        """Take a user's rights on one database away; False when it had none."""
        raise self._no_databases()

    @abc.abstractmethod
    def backup(self, request: BackupRequest) -> Iterator[BackupPiece]:
        """Stream a physical, online backup: chunks of at most ``CHUNK_BYTES``, then one
        ``BackupDone``. Unsupported for an incremental the engine cannot make."""

    @abc.abstractmethod
    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Unpack one backup of a chain into a fresh, unprepared instance; returns the bytes
        read. ``prepare`` with ``restored=True`` then recovers the data and starts."""

    @abc.abstractmethod
    def check_consistency(self) -> ConsistencyReport:
        """Run the engine's own checker over all the data (prepared engines only)."""

    def list_archive(self, rotate: bool) -> list[ArchiveFile]:
        """Closed archive files not yet removed, oldest first; ``rotate`` first closes the
        current one if it holds new changes. Engines without an archive have none."""
        return []

    def fetch_archive(self, name: str) -> Iterator[bytes]:
        """The bytes of one closed archive file, in pieces of at most ``CHUNK_BYTES``."""
        raise Unsupported(f"{self.name} keeps no archive for point-in-time recovery")

    def remove_archive(self, names: tuple[str, ...]) -> int:
        """Delete archive files the control plane has stored; returns how many went."""
        return 0

    def enable_replication(self, request: EnableReplicationRequest) -> None:
        """Make this (writable) instance a source: create or update the replication
        account, keep per-replica state for exactly ``replicas``; idempotent."""
        self._require_prepared()
        self.replication.enable(request)

    def replication_state(self) -> ReplicationState:
        """This member's role, position and, for a replica, its link and lag."""
        self._require_prepared()
        return self.replication.state()

    @abc.abstractmethod
    def stop_writes(self) -> ReplicationState:
        """Switchover, on the old primary: refuse new writes, end open transactions, and
        return the final position (every acknowledged write is at or before it)."""

    @abc.abstractmethod
    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        """Become a writable primary, first waiting until ``position_value`` reaches
        ``wait_for_position`` (0: no wait; EngineError past ``timeout``). A no-op on a
        primary. The same call detaches a replica into a standalone instance."""

    @abc.abstractmethod
    def follow(self, source: ReplicationSource) -> None:
        """Become (or stay) a read-only replica of ``source``: re-point a replica, or
        turn a former primary into one, rewinding or recopying its data if needed."""


class SqlEngine(Engine):
    """An engine whose server keeps named databases (PostgreSQL, MariaDB): the database
    calls go to ``admin`` too, once the instance is prepared."""

    admin: SqlAdmin

    def create_database(self, request: Database) -> bool:
        self._require_prepared()
        return self.admin.create_database(request)

    def list_databases(self) -> list[Database]:
        self._require_prepared()
        return self.admin.list_databases()

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        self._require_prepared()
        return self.admin.delete_database(request)

    def grant_access(self, request: GrantAccessRequest) -> None:
        self._require_prepared()
        self.admin.grant_access(request)

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        self._require_prepared()
        return self.admin.revoke_access(request)
