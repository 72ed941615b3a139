"""Replication of one Redis server: its account for replicas, its source, switchovers.

Use :class:`RedisReplication` for anything about a server's role. Redis replicates with
REPLICAOF: a replica logs in to its primary as the replication ACL user, takes a full
sync (an RDB snapshot) and then the primary's command stream. Positions are replication
offsets, which a promoted replica carries on (PSYNC2), so they only grow along the set's
history. The source is kept in ``redis-replication.conf`` (``redis_config``), so a
restarted server keeps its role. ACL users are not replicated: a member that follows a
source copies the source's users (their rules and password hashes, read with ACL LIST as
the replication account), and gets the replication account, so that it can be a source
once promoted. Following the same source again copies the users again.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path

from cellar.errors import InvalidInput
from cellar.names import check_identifier, check_password
from guestagent.engines.messages import (
    EnableReplicationRequest,
    ReplicationSource,
    ReplicationState,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.redis_admin import ROOT_USER, RedisAdmin
from guestagent.engines.redis_config import (
    ADMIN_USER,
    HOST,
    password_hash,
    write_replication_config,
)
from guestagent.engines.redis_wire import RedisConnection, ReplyError
from guestagent.engines.tls_files import EngineTls
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

# What a replica runs on its primary: the handshake (PING, REPLCONF listening-port/capa),
# PSYNC, then REPLCONF ACK every second; and ACL LIST, to copy the users. Not even reads.
REPLICA_RIGHTS = ("on", "resetchannels", "-@all", "+psync", "+replconf", "+ping", "+acl|list")
NOT_REPLICATION_USERS = frozenset({ADMIN_USER, ROOT_USER})
PAUSE_SECONDS = 10.0  # stop_writes holds writes this long at most
LINK_TIMEOUT = 60.0  # a new replica's first full sync
POLL_EVERY = 0.05


def checked_source(source: ReplicationSource) -> ReplicationSource:
    """``source`` if its address and account are acceptable, else InvalidInput."""
    if not HOST.fullmatch(source.host):
        raise InvalidInput(f"replication source host {source.host!r} is not allowed")
    if not 0 < source.port < 65536:
        raise InvalidInput(f"replication source port {source.port} is not allowed")
    check_identifier("replication user", source.user, NOT_REPLICATION_USERS)
    check_password(source.password, "replication")
    return source


class RedisReplication:
    """Reads and changes the role of the server that ``admin`` talks to."""

    def __init__(
        self,
        admin: RedisAdmin,
        data_dir: Path,
        owner: OsUser,
        pause_seconds: float = PAUSE_SECONDS,
        tls: EngineTls | None = None,
    ) -> None:
        self.tls = tls
        self.admin = admin
        self.data_dir = data_dir
        self.owner = owner
        self.pause_seconds = pause_seconds
        self._paused_until = 0.0  # monotonic time; writes are paused before it
        self._lock = threading.Lock()  # one role change at a time

    def info(self) -> dict[str, str]:
        return self.admin.info("replication")

    def state(self) -> ReplicationState:
        """This server's role and position, from INFO replication."""
        info = self.info()
        if info.get("role") == "master":
            offset = int(info.get("master_repl_offset", "0"))
            return ReplicationState(
                role="primary",
                position=str(offset),
                position_value=offset,
                replicas_connected=int(info.get("connected_slaves", "0")),
                writable=time.monotonic() >= self._paused_until,
            )
        offset = int(info.get("slave_repl_offset", "0"))
        up = info.get("master_link_status") == "up"
        return ReplicationState(
            role="replica",
            position=str(offset),
            position_value=offset,
            source_connected=up,
            lag_seconds=float(info.get("master_last_io_seconds_ago", "-1")) if up else -1.0,
            lag_bytes=-1,  # a replica does not know how far ahead its primary is
            source_host=info.get("master_host", ""),
            writable=False,
        )

    def enable(self, request: EnableReplicationRequest) -> None:
        """Let replicas log in as ``request.user`` (created or updated; idempotent).

        Redis keeps no per-replica state and has no synchronous replication: the
        replica names and ``synchronous`` are ignored.
        """
        self.set_account(request.user, request.password)

    def set_account(self, user: str, password: str) -> None:
        """The replication ACL user with ``password`` and only a replica's rights, saved."""
        check_identifier("replication user", user, NOT_REPLICATION_USERS)
        check_password(password, "replication")
        self.admin.run("ACL", "SETUSER", user, "reset", password_hash(password), *REPLICA_RIGHTS)
        self.admin.run("ACL", "SAVE")
        logger.info("replication user %s is ready", user)

    def persist(self, source: ReplicationSource | None) -> None:
        """Make a restarted server replicate from ``source`` (None: be a primary)."""
        if write_replication_config(self.data_dir, source, self.owner):
            where = "no source" if source is None else f"{source.host}:{source.port}"
            logger.info("replication source in the configuration: %s", where)

    def follow(self, source: ReplicationSource) -> None:
        """Replicate from ``source`` now and after restarts; writes paused by
        :meth:`stop_writes` resume, and are refused as on any replica."""
        source = checked_source(source)
        with self._lock:
            self.set_account(source.user, source.password)
            self.persist(source)
            self.admin.config_set(
                {
                    "masteruser": source.user,
                    "masterauth": source.password,
                    "replica-read-only": "yes",
                }
            )
            self.admin.run("REPLICAOF", source.host, str(source.port))  # no-op if the same
            self._unpause()
            self.copy_users(source)
        logger.info("replicating from %s:%d", source.host, source.port)

    def copy_users(self, source: ReplicationSource) -> int:
        """Make this server's users those of ``source`` (rules and password hashes), but
        for its own admin and replication accounts; returns how many were copied."""
        files = self.tls.files() if self.tls is not None else None
        context = None
        if files is not None:  # the source's port speaks TLS alone; check who answers
            context = ssl.create_default_context(cafile=str(files.ca))
        where = (source.host, source.port)
        remote = RedisConnection(where, source.user, source.password, tls=context)
        try:
            lines = remote.command("ACL", "LIST")
        except (OSError, ReplyError) as exc:
            raise EngineError(f"cannot read the users of {source.host}: {exc}") from exc
        finally:
            remote.close()
        keep = {ADMIN_USER, source.user}
        wanted: dict[str, list[str]] = {}
        for line in lines if isinstance(lines, list) else []:
            words = (line.decode() if isinstance(line, bytes) else str(line)).split()
            if len(words) >= 2 and words[0] == "user" and words[1] not in keep:
                wanted[words[1]] = words[2:]
        for name, rules in wanted.items():
            self.admin.run("ACL", "SETUSER", name, "reset", *rules)
        present = self.admin.run("ACL", "USERS")
        for item in present if isinstance(present, list) else []:
            text = item.decode() if isinstance(item, bytes) else str(item)
            if text not in wanted and text not in keep and text != ROOT_USER:
                self.admin.run("ACL", "DELUSER", text)
        self.admin.run("ACL", "SAVE")
        return len(wanted)

    def wait_for_link(self, timeout: float = LINK_TIMEOUT) -> ReplicationState:
        """Wait until the link to the source is up; EngineError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.role == "replica" and state.source_connected:
                return state
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"the replica's link to {state.source_host or 'its source'} is not up "
                    f"after {timeout:.0f} s (check the source's address and replication user)"
                )
            time.sleep(POLL_EVERY)

    def stop_writes(self) -> ReplicationState:
        """Pause writes for at most ``pause_seconds``; the returned position is final.

        Redis runs one command at a time, so every write acknowledged before the pause
        is in the replication stream at ``master_repl_offset``. A replica takes no writes
        anyway: its state is returned as it is.
        """
        with self._lock:
            if self.info().get("role") != "master":
                return self.state()
            millis = int(self.pause_seconds * 1000)
            self._paused_until = time.monotonic() + self.pause_seconds
            self.admin.run("CLIENT", "PAUSE", str(millis), "WRITE")
            state = self.state()
        logger.info("writes paused at offset %d for %.0f s", state.position_value, millis / 1000)
        return state

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        """Become a writable primary once the received offset reaches ``wait_for_position``
        (0: at once); EngineError past ``timeout``. On a primary, only resumes writes paused
        by :meth:`stop_writes` (a cancelled switchover)."""
        with self._lock:
            state = self._wait_for_position(wait_for_position, timeout)
            self.persist(None)
            if state.role == "replica":
                self.admin.run("REPLICAOF", "NO", "ONE")
                logger.info(
                    "promoted at offset %d (source %s)", state.position_value, state.source_host
                )
            self._unpause()
            return self.state()

    def _wait_for_position(self, wanted: int, timeout: float) -> ReplicationState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.role == "primary" or state.position_value >= wanted:
                return state
            if time.monotonic() >= deadline:
                link = "up" if state.source_connected else "down"
                raise EngineError(
                    f"not promoted: the replica received up to offset {state.position_value}, "
                    f"not {wanted}, within {timeout:.0f} s (its link is {link})"
                )
            time.sleep(POLL_EVERY)

    def _unpause(self) -> None:
        """End a pause of :meth:`stop_writes` (also one an earlier agent left; else a no-op)."""
        self.admin.run("CLIENT", "UNPAUSE")
        if self._paused_until:
            self._paused_until = 0.0
            logger.info("writes resumed")
