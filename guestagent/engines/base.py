"""The common surface of every engine the guest agent can run.

Each engine module (``postgres.py``, later ``mariadb.py``, ``redis.py``) subclasses
:class:`Engine`; the server only ever talks to this class. Every call takes at most one
request object, so adding a field never changes a signature.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

from guestagent.errors import NotPrepared, Unsupported
from guestagent.logfile import LogFile


@enum.unique
class ServiceStatus(enum.Enum):
    """What the engine is doing, as the agent sees it (the proto enum of the same names)."""

    NEW = "NEW"
    BUILDING = "BUILDING"
    HEALTHY = "HEALTHY"
    SHUTDOWN = "SHUTDOWN"
    FAILED = "FAILED"


@dataclasses.dataclass(frozen=True)
class StatusReport:
    status: ServiceStatus
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Database:
    """A database to create, or one found by ``list_databases``."""

    name: str
    character_set: str = ""
    collate: str = ""


@dataclasses.dataclass(frozen=True)
class User:
    """A user to create (with its password), or one found by ``list_users`` (without).

    ``databases`` are the ones the user is granted, or can connect to when listed.
    """

    name: str
    password: str = dataclasses.field(default="", repr=False)
    host: str = ""
    databases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ReplicationSource:
    """A primary to replicate from: its address on the instances' network, the account
    replicas use, and ``name``, the replica's own name there (a slot, a client name)."""

    host: str
    port: int
    user: str
    password: str = dataclasses.field(default="", repr=False)
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ReplicationState:
    """Replication as one member of a set sees it.

    ``position_value`` only grows along the set's history (a PostgreSQL LSN, a MariaDB
    GTID sequence number, a Redis replication offset), so members can be compared.
    ``lag_seconds`` and ``lag_bytes`` are -1 when the engine cannot say.
    """

    role: str  # "primary" or "replica"
    position: str = ""
    position_value: int = 0
    source_connected: bool = False
    lag_seconds: float = -1.0
    lag_bytes: int = -1
    source_host: str = ""
    replicas_connected: int = 0
    writable: bool = False


@dataclasses.dataclass(frozen=True)
class EnableReplicationRequest:
    """Let replicas in: the account they log in with, and every replica's name (state
    kept for names not listed, such as PostgreSQL slots, is dropped)."""

    user: str
    password: str = dataclasses.field(default="", repr=False)
    replicas: tuple[str, ...] = ()
    synchronous: bool = False  # a commit waits until one replica has it (where supported)


@dataclasses.dataclass(frozen=True)
class PrepareRequest:
    """Everything a fresh instance needs: its first databases and users, its memory."""

    databases: tuple[Database, ...] = ()
    users: tuple[User, ...] = ()
    memory_mb: int = 0
    configuration: tuple[tuple[str, str], ...] = ()  # user parameters (name, value)
    restored: bool = False  # ``restore`` filled the data directory: recover it, no fresh init
    restore_time: str = ""  # with ``restored``: replay the archive up to here (RFC 3339, UTC)
    replica_of: ReplicationSource | None = None  # start as a read-only replica of it


@dataclasses.dataclass(frozen=True)
class DeleteDatabaseRequest:
    name: str


@dataclasses.dataclass(frozen=True)
class DeleteUserRequest:
    name: str
    host: str = ""


@dataclasses.dataclass(frozen=True)
class GrantAccessRequest:
    """Every right on each of ``databases`` for the user ``name`` (at ``host``)."""

    name: str
    host: str = ""
    databases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RevokeAccessRequest:
    name: str
    database: str
    host: str = ""


@dataclasses.dataclass(frozen=True)
class BackupRequest:
    backup_id: str
    type: str = "full"  # or "incremental", on top of ``parent_checkpoint``
    parent_checkpoint: str = ""


@dataclasses.dataclass(frozen=True)
class BackupDone:
    """The end of a backup stream: where it ends and how its bytes are packed."""

    checkpoint: str
    format: str


@dataclasses.dataclass(frozen=True)
class RestoreStart:
    format: str
    type: str = "full"  # then "incremental"s, then "archive" files to replay
    position: int = 0  # 0 for the full backup, then 1, 2, ... for what follows
    name: str = ""  # an archive file's name


@dataclasses.dataclass(frozen=True)
class ArchiveFile:
    """A closed file of the continuous archive; it holds no commit after ``closed_at``."""

    name: str
    size: int
    closed_at: float  # unix time


@dataclasses.dataclass(frozen=True)
class ConsistencyReport:
    ok: bool
    detail: str = ""


MARKER = ".cellar-prepared"  # in the data directory of a prepared instance
BackupPiece = bytes | BackupDone
CHUNK_BYTES = 1024 * 1024  # the most a backup chunk holds


def pipe_chunks(pipe: IO[bytes]) -> Iterator[bytes]:
    """A tool's output pipe in chunks of at most ``CHUNK_BYTES``, until it closes.

    The pipe is widened to a whole chunk first (where the kernel allows), so the tool
    writes a chunk before it waits for the agent, not 64 KiB.
    """
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, CHUNK_BYTES)
    except OSError:  # over the host's pipe-max-size: keep the default
        pass
    while chunk := pipe.read(CHUNK_BYTES):
        yield chunk


@dataclasses.dataclass(frozen=True)
class VolumeUsage:
    used_bytes: int = 0
    total_bytes: int = 0


class Engine(abc.ABC):
    """One database engine inside an instance container.

    Constructed as ``EngineClass(data_dir)``, with engine-specific options as keywords.
    Calls may arrive concurrently from the server's threads; an engine serialises
    what must be serialised (``prepare``, ``start``, ``stop``) itself. Methods raise
    ``cellar.errors.InvalidInput`` for bad names and ``guestagent.errors`` otherwise.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.marker = self.data_dir / MARKER  # written once the instance is prepared

    def prepared(self) -> bool:
        return self.marker.exists()

    def _write_marker(self) -> None:
        if self.marker.exists():
            return
        scratch = self.marker.with_name(MARKER + ".new")
        scratch.write_text(json.dumps({"engine": self.name, "version": self.version}) + "\n")
        os.replace(scratch, self.marker)

    def _require_prepared(self) -> None:
        if not self.prepared():
            raise NotPrepared("the instance is not prepared yet")

    def restart(self) -> ServiceStatus:
        """Stop the engine cleanly and start it again (prepared engines only)."""
        self.stop()
        self.start()
        return self.status().status

    def resize(self, memory_mb: int) -> bool:
        """Apply a new memory size to the derived settings; True if the engine restarted."""
        raise Unsupported(f"{self.name} cannot be resized yet")

    def apply_configuration(self, values: dict[str, str]) -> bool:
        """Make ``values`` the user parameters; True if some need a restart to apply."""
        raise Unsupported(f"{self.name} has no configuration parameters yet")

    def volume_usage(self) -> VolumeUsage:
        """How full the file system of the data directory is (zeros if it cannot be read)."""
        try:
            stats = os.statvfs(self.data_dir)
        except OSError:
            return VolumeUsage()
        total = stats.f_blocks * stats.f_frsize
        return VolumeUsage(used_bytes=total - stats.f_bfree * stats.f_frsize, total_bytes=total)

    def logs(self) -> dict[str, LogFile]:
        """The logs this engine keeps, by name (none unless an engine says so)."""
        return {}

    def warm_up(self) -> None:  # noqa: B027  (optional hook: most engines need none)
        """Start slow, input-independent work early (called once, before serving)."""

    @abc.abstractmethod
    def prepare(self, request: PrepareRequest) -> ServiceStatus:
        """Set up the engine on first use, or make sure it is set up; returns when healthy."""

    @abc.abstractmethod
    def status(self) -> StatusReport:
        """Report what the engine is doing now; cheap, never blocks on ``prepare``."""

    @abc.abstractmethod
    def create_database(self, request: Database) -> bool:
        """Create a database; False when it already existed."""

    @abc.abstractmethod
    def list_databases(self) -> list[Database]:
        """The users' databases, without the engine's own."""

    @abc.abstractmethod
    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        """Drop a database even with open connections; False when it did not exist."""

    @abc.abstractmethod
    def create_user(self, request: User) -> bool:
        """Create a user and grant it its databases; False when it already existed."""

    @abc.abstractmethod
    def list_users(self) -> list[User]:
        """The users' accounts, without the engine's own, passwords left empty."""

    @abc.abstractmethod
    def delete_user(self, request: DeleteUserRequest) -> bool:
        """Drop a user and what it owns; False when it did not exist."""

    @abc.abstractmethod
    def change_password(self, request: User) -> bool:
        """Give an existing user a new password; False when the user does not exist."""

    @abc.abstractmethod
    def grant_access(self, request: GrantAccessRequest) -> None:
        """Give a user every right on each database; InvalidInput if one does not exist."""

    @abc.abstractmethod
    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        """Take a user's rights on one database away; False when it had none."""

    @abc.abstractmethod
    def enable_root(self, password: str) -> str:
        """Let the superuser log in over the network with ``password``; returns its name."""

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

    @abc.abstractmethod
    def enable_replication(self, request: EnableReplicationRequest) -> None:
        """Make this (writable) instance a source: create or update the replication
        account, keep per-replica state for exactly ``replicas``; idempotent."""

    @abc.abstractmethod
    def replication_state(self) -> ReplicationState:
        """This member's role, position and, for a replica, its link and lag."""

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

    @abc.abstractmethod
    def start(self) -> None:
        """Start a prepared engine (after a container restart); no-op when running."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the engine quickly and cleanly; no-op when it is not running."""
