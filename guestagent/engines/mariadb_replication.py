"""GTID replication between MariaDB servers: sources, replicas, switchover and failover.

Use :class:`MariadbReplication` for everything that changes or reads a member's role.
A primary lets replicas in with ``enable`` (the replication account, semi-synchronous
commits if asked). A replica is seeded from a restored backup of its primary (``seed``):
the backup's GTID position becomes both its binary log state and its replication
position, and it replicates with ``MASTER_USE_GTID=slave_pos``. ``stop_writes``,
``promote`` and ``follow`` make a switchover; ``promote(0)`` alone is a failover or a
detach. Every member has its own random ``server_id`` once it joins a set, writes what it
replicates to its own binary log (``log_slave_updates``), and keeps ``read_only`` in its
option file so that a restart keeps its role.

Positions are compared by the sequence number of domain 0's GTID: Cellar writes in that
domain only, so it grows along the set's history. Passwords only ever appear in the
statements that carry them (sessions that log nothing), never in a log line or an error.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from cellar.errors import InvalidInput
from cellar.names import check_identifier, check_password
from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.mariadb_admin import MariadbAdmin, password_hash
from guestagent.engines.mariadb_config import (
    UNASSIGNED_SERVER_ID,
    ReplicationSettings,
    new_server_id,
    read_replication_settings,
    write_replication_config,
)
from guestagent.engines.messages import (
    EnableReplicationRequest,
    ReplicationSource,
    ReplicationState,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.tls_files import EngineTls, TlsFiles
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

GTID = r"[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20}"
GTID_LIST = re.compile(rf"{GTID}(,{GTID})*")
SOURCE_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,255}")
ACCOUNT_HOST = "%"
RIGHTS = "REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR"
DOMAIN = 0  # the GTID domain Cellar's writes are in
POLL_EVERY = 0.05
THREADS_START_TIMEOUT = 10.0
LOCK_WAIT_SECONDS = 5  # SET GLOBAL read_only waits this long for running writes, per try
READ_ONLY_TRIES = 3
LOCK_WAIT_TIMEOUT = 1205
# Sessions that stop_writes leaves alone: replicas reading the binary log, server threads.
KEPT_COMMANDS = frozenset({"Binlog Dump", "Daemon", "Slave_IO", "Slave_SQL", "Slave_worker"})
KEPT_USERS = frozenset({"system user", "event_scheduler"})


def gtid_seq(position: str, domain: int = DOMAIN) -> int:
    """The sequence number of ``domain``'s GTID in a GTID list (else the highest; 0 if none)."""
    found: dict[int, int] = {}
    for gtid in position.replace("\n", "").split(","):
        parts = gtid.strip().split("-")
        if len(parts) == 3 and all(part.isdigit() for part in parts):
            found[int(parts[0])] = max(found.get(int(parts[0]), 0), int(parts[2]))
    if domain in found:
        return found[domain]
    return max(found.values(), default=0)


def checked_gtid_list(text: str) -> str:
    """``text`` without blanks if it is a GTID list such as ``0-1-17,1-2-5`` (or empty)."""
    compact = "".join(text.split())
    if compact and not GTID_LIST.fullmatch(compact):
        raise EngineError(f"{compact[:80]!r} is not a GTID position")
    return compact


def read_backup_gtid(path: Path) -> str:
    """The GTID position mariabackup recorded next to the binary log position
    (``xtrabackup_binlog_info``: file, offset, GTID list); EngineError if absent."""
    try:
        fields = safe_files.read_text(path).split(maxsplit=2)
    except FileNotFoundError as exc:
        raise EngineError(
            "the restored backup records no binary log position: a replica cannot start"
        ) from exc
    if len(fields) < 2:
        raise EngineError(f"{path.name} of the restored backup is not a binary log position")
    return checked_gtid_list(fields[2]) if len(fields) == 3 else ""


def checked_source(source: ReplicationSource) -> ReplicationSource:
    """``source`` if its address, account and replica name are acceptable, else InvalidInput."""
    if not SOURCE_HOST.fullmatch(source.host or ""):
        raise InvalidInput(
            f"source host {source.host[:80]!r} is not allowed: use letters, digits and . - : _"
        )
    if not 0 < source.port < 65536:
        raise InvalidInput(f"source port {source.port} is not a TCP port")
    check_identifier("replication user", source.user)
    check_password(source.password, kind="replication")
    if source.name:
        check_identifier("replica", source.name)
    return source


def checked_request(request: EnableReplicationRequest) -> EnableReplicationRequest:
    check_identifier("replication user", request.user)
    check_password(request.password, kind="replication")
    for name in request.replicas:
        check_identifier("replica", name)
    return request


@dataclasses.dataclass(frozen=True)
class _Link:
    """What ``SHOW SLAVE STATUS`` says about this server's link to its source."""

    fields: dict[str, Any]

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return "" if value is None else str(value)

    def number(self, name: str) -> int | None:
        value = self.fields.get(name)
        return None if value is None or str(value) == "" else int(value)

    @property
    def errors(self) -> str:
        found = [
            f"{kind} thread: {self.text(f'Last_{kind}_Error')}"
            for kind in ("IO", "SQL")
            if self.text(f"Last_{kind}_Error")
        ]
        return "; ".join(found) or "no error reported"


class MariadbReplication:
    """The replication role of the server reached through ``admin``; its option file is
    ``cellar-replication.cnf`` in ``config_dir``."""

    def __init__(
        self, admin: MariadbAdmin, config_dir: Path, owner: OsUser, tls: EngineTls | None = None
    ) -> None:
        self.admin = admin
        self.tls = tls or EngineTls.off()  # the engine's: replicas check their source
        self.config_dir = config_dir
        self.owner = owner
        self._lock = threading.Lock()  # one role change at a time

    # The option file

    def settings(self) -> ReplicationSettings:
        return read_replication_settings(self.config_dir)

    def _persist(self, **changes: Any) -> ReplicationSettings:
        """Write the member's settings with ``changes``, a new ``server_id`` if it has none."""
        settings = dataclasses.replace(self.settings(), **changes)
        if settings.server_id == UNASSIGNED_SERVER_ID:
            settings = dataclasses.replace(settings, server_id=new_server_id())
            logger.info("this member's server_id is now %d", settings.server_id)
        write_replication_config(self.config_dir, settings, self.owner)
        return settings

    def persist_replica(self) -> None:
        """Before a replica's first start: its own ``server_id``, read-only from the start."""
        self._persist(read_only=True, semi_sync=False)

    def _apply(self, cursor: pymysql.cursors.Cursor, settings: ReplicationSettings) -> None:
        """Make the running server's variables what ``settings`` say (only those that differ:
        turning ``read_only`` on waits for running writes, at most ``LOCK_WAIT_SECONDS``)."""
        cursor.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
        cursor.execute(
            "SELECT @@GLOBAL.server_id, @@GLOBAL.read_only, @@GLOBAL.rpl_semi_sync_master_enabled"
        )
        row = cursor.fetchone()
        server_id, read_only, semi_sync = (int(value) for value in row) if row else (0, -1, -1)
        if server_id != settings.server_id:
            cursor.execute("SET GLOBAL server_id = %s", (settings.server_id,))
        if read_only != int(settings.read_only):
            cursor.execute("SET GLOBAL read_only = %s", ("ON" if settings.read_only else "OFF",))
        if semi_sync != int(settings.semi_sync):
            cursor.execute(
                "SET GLOBAL rpl_semi_sync_master_enabled = %s",
                ("ON" if settings.semi_sync else "OFF",),
            )

    # A primary

    def enable(self, request: EnableReplicationRequest) -> None:
        """Create or update the replicas' account with its rights; semi-synchronous commits
        when ``synchronous``. Refused on a replica: its primary lets replicas in."""
        request = checked_request(request)
        with self._lock, self.admin.connect() as cursor:
            link = _link(cursor)
            if link is not None:
                raise InvalidInput(
                    f"this instance replicates from {link.text('Master_Host')}: "
                    "enable replication on its primary"
                )
            settings = self._persist(semi_sync=request.synchronous)
            self._apply(cursor, settings)
            secret = password_hash(request.password)
            cursor.execute(
                "SELECT Password FROM mysql.user WHERE User = %s AND Host = %s",
                (request.user, ACCOUNT_HOST),
            )
            row = cursor.fetchone()
            if row is None:
                cursor.execute(
                    "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s",
                    (request.user, ACCOUNT_HOST, secret),
                )
            elif str(row[0]) != secret:
                cursor.execute(
                    "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s",
                    (request.user, ACCOUNT_HOST, secret),
                )
            cursor.execute(f"GRANT {RIGHTS} ON *.* TO %s@%s", (request.user, ACCOUNT_HOST))
        logger.info(
            "replication enabled for %s@%s (%s commits), replicas %s",
            request.user,
            ACCOUNT_HOST,
            "semi-synchronous" if request.synchronous else "asynchronous",
            list(request.replicas),
        )

    # Either role

    def state(self) -> ReplicationState:
        with self.admin.connect() as cursor:
            return _state(cursor)

    def stop_writes(self) -> ReplicationState:
        """Read-only, every client session ended, and the final position (a replica is
        already read-only: its state)."""
        with self._lock, self.admin.connect() as cursor:
            if _link(cursor) is not None:
                return _state(cursor)
            self._persist(read_only=True)
            cursor.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
            for attempt in range(1, READ_ONLY_TRIES + 1):
                try:
                    cursor.execute("SET GLOBAL read_only = ON")
                    break
                except pymysql.MySQLError as exc:
                    if attempt == READ_ONLY_TRIES or exc.args[:1] != (LOCK_WAIT_TIMEOUT,):
                        raise
                    logger.warning(
                        "writes still running after %d s: ending them", attempt * LOCK_WAIT_SECONDS
                    )
                    _end_client_sessions(cursor)
            ended = _end_client_sessions(cursor)
            state = _state(cursor)
        logger.info("writes stopped at %s (%d sessions ended)", state.position, ended)
        return state

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        """Wait until the applied position reaches ``wait_for_position``, stop replicating,
        forget the source and become writable. On a non-replica: writable again."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            with self.admin.connect() as cursor:
                link = _link(cursor)
            if link is not None and wait_for_position > 0:
                self._wait_applied(wait_for_position, deadline)
            with self.admin.connect() as cursor:
                if link is not None:
                    cursor.execute("STOP SLAVE")
                    cursor.execute("RESET SLAVE ALL")
                settings = self._persist(read_only=False)
                self._apply(cursor, settings)
                state = _state(cursor)
        if link is not None:
            logger.info(
                "promoted at %s (was replicating from %s)", state.position, link.text("Master_Host")
            )
        return state

    def _wait_applied(self, position: int, deadline: float) -> None:
        while True:
            with self.admin.connect() as cursor:
                applied = gtid_seq(_variable(cursor, "gtid_slave_pos"))
                if applied >= position:
                    return
                if time.monotonic() >= deadline:
                    link = _link(cursor)
                    errors = link.errors if link is not None else "the link is gone"
                    raise EngineError(
                        f"replica applied up to {applied}, not {position}, in time: {errors}"
                    )
            time.sleep(POLL_EVERY)

    def follow(self, source: ReplicationSource) -> None:
        """Replicate from ``source``, read-only: re-point a replica, or make a former
        primary continue after its own last transaction."""
        source = checked_source(source)
        with self._lock, self.admin.connect() as cursor:
            settings = self._persist(read_only=True, semi_sync=False)
            self._apply(cursor, settings)
            link = _link(cursor)
            if link is not None:
                cursor.execute("STOP SLAVE")
            else:
                cursor.execute("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")
            _point_at(cursor, source, self.tls.files())
            cursor.execute("START SLAVE")
            _wait_threads(cursor, time.monotonic() + THREADS_START_TIMEOUT)
            position = _variable(cursor, "gtid_slave_pos")
        logger.info(
            "following %s:%d as %s from %s",
            source.host,
            source.port,
            source.name or "a replica",
            position or "the start",
        )

    # A new replica

    def seed(self, source: ReplicationSource, gtid: str) -> None:
        """Start replicating from ``source`` after the restored backup's ``gtid``; resumes
        an interrupted seed (a server already linked only starts its threads)."""
        source = checked_source(source)
        gtid = checked_gtid_list(gtid)
        with self._lock, self.admin.connect() as cursor:
            settings = self._persist(read_only=True, semi_sync=False)
            self._apply(cursor, settings)
            if _link(cursor) is None:
                if gtid and not _variable(cursor, "gtid_binlog_pos"):
                    # The binary log continues the backup's history: a promoted replica
                    # numbers its first write after it, and its replicas find the start.
                    cursor.execute("SET GLOBAL gtid_binlog_state = %s", (gtid,))
                cursor.execute("SET GLOBAL gtid_slave_pos = %s", (gtid,))
                _point_at(cursor, source, self.tls.files())
            cursor.execute("START SLAVE")
            _wait_threads(cursor, time.monotonic() + THREADS_START_TIMEOUT)
        logger.info(
            "replica %s of %s:%d seeded at %s",
            source.name or "(unnamed)",
            source.host,
            source.port,
            gtid or "the start",
        )


def _point_at(
    cursor: pymysql.cursors.Cursor, source: ReplicationSource, tls: TlsFiles | None = None
) -> None:
    options, values = tls_settings.mariadb_source(tls)
    cursor.execute(
        "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s,"
        " MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1" + options,
        (source.host, int(source.port), source.user, source.password, *values),
    )


def _variable(cursor: pymysql.cursors.Cursor, name: str) -> str:
    cursor.execute(f"SELECT @@GLOBAL.{name}")
    row = cursor.fetchone()
    return "" if row is None or row[0] is None else str(row[0])


def _link(cursor: pymysql.cursors.Cursor) -> _Link | None:
    """This server's link to a source, or None when it has no slave configuration."""
    cursor.execute("SHOW SLAVE STATUS")
    row = cursor.fetchone()
    if row is None:
        return None
    names = [str(column[0]) for column in cursor.description or ()]
    link = _Link(dict(zip(names, row, strict=True)))
    return link if link.text("Master_Host") else None


def _wait_threads(cursor: pymysql.cursors.Cursor, deadline: float) -> None:
    """Until both replication threads run (the I/O one may still be connecting)."""
    while True:
        link = _link(cursor)
        if link is None:
            raise EngineError("the replica lost its slave configuration while starting")
        io, sql = link.text("Slave_IO_Running"), link.text("Slave_SQL_Running")
        if sql == "Yes" and io in ("Yes", "Connecting"):
            return
        if time.monotonic() >= deadline:
            raise EngineError(f"replication did not start (I/O {io}, SQL {sql}): {link.errors}")
        time.sleep(POLL_EVERY)


def _state(cursor: pymysql.cursors.Cursor) -> ReplicationState:
    link = _link(cursor)
    if link is None:
        position = _variable(cursor, "gtid_binlog_pos")
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'"
        )
        row = cursor.fetchone()
        return ReplicationState(
            role="primary",
            position=position,
            position_value=gtid_seq(position),
            replicas_connected=int(row[0]) if row is not None else 0,
            writable=_variable(cursor, "read_only") in ("0", "OFF"),
        )
    position = link.text("Gtid_IO_Pos") or _variable(cursor, "gtid_slave_pos")
    behind = link.number("Seconds_Behind_Master")
    read, done = link.number("Read_Master_Log_Pos"), link.number("Exec_Master_Log_Pos")
    same_file = link.text("Master_Log_File") == link.text("Relay_Master_Log_File")
    return ReplicationState(
        role="replica",
        position=position,
        position_value=gtid_seq(position),
        source_connected=link.text("Slave_IO_Running") == "Yes",
        lag_seconds=-1.0 if behind is None else float(behind),
        lag_bytes=read - done if same_file and read is not None and done is not None else -1,
        source_host=link.text("Master_Host"),
        writable=False,
    )


def _end_client_sessions(cursor: pymysql.cursors.Cursor) -> int:
    """Kill every client session but this one, replicas' and the server's own; how many."""
    cursor.execute(
        "SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
    )
    ended = 0
    for session, user, command in cursor.fetchall():
        if str(command) in KEPT_COMMANDS or str(user) in KEPT_USERS:
            continue
        try:
            cursor.execute("KILL CONNECTION %s", (int(session),))
            ended += 1
        except pymysql.MySQLError:
            pass  # it ended since
    return ended
