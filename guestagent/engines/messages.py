"""The typed messages of the engine calls: what an engine takes and what it returns.

Every call of :class:`guestagent.engines.base.Engine` takes at most one of these request
objects, so adding a field never changes a signature. Use :func:`pipe_chunks` to turn a
backup tool's output into the chunks a backup stream is made of.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import logging
from collections.abc import Iterator
from typing import IO

from cellar.errors import InvalidInput

logger = logging.getLogger(__name__)

# What a user may do on its databases: every right, read only, or read and change rows.
ACCESS = ("", "read", "write")


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
    ``access`` is one of ``ACCESS``; ``valid_until`` (RFC 3339, UTC, or empty) is when
    the login expires, where the engine keeps such a moment.
    """

    name: str
    password: str = dataclasses.field(default="", repr=False)
    host: str = ""
    databases: tuple[str, ...] = ()
    access: str = ""
    valid_until: str = ""


def check_access(access: str) -> str:
    """``access`` if it is one of ``ACCESS``, else InvalidInput."""
    if access not in ACCESS:
        known = ", ".join(repr(a) for a in ACCESS)
        raise InvalidInput(f"access {access!r} is not one of {known}")
    return access


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
class CountSessionsRequest:
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
