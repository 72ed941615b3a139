"""Streaming replication of one PostgreSQL cluster: a source and its hot standbys.

Use :class:`PostgresReplication` from the engine facade, which checks that the engine is
prepared and serialises the calls that start or stop the server. A primary becomes a
source with :meth:`~PostgresReplication.enable` (the replication account, one
physical slot per replica, the synchronous standbys); a restored backup of it starts as
a hot standby with :meth:`~PostgresReplication.start_standby`;
:meth:`~PostgresReplication.stop_writes`, :meth:`~PostgresReplication.promote` and
:meth:`~PostgresReplication.follow` move the primary role in a switchover or a failover;
:meth:`~PostgresReplication.state` reports either side.

A standby's settings (``primary_conninfo`` without a password, its slot) are in
``cellar-replication.conf`` beside ``standby.signal``; a primary's synchronous standbys
are in the same file. The password is
in a passfile next to the data directory, not in it: it never reaches a backup, a
rewind, a command line or a log line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from cellar.errors import InvalidInput
from cellar.names import check_identifier, check_password
from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.messages import (
    EnableReplicationRequest,
    ReplicationSource,
    ReplicationState,
)
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_config import (
    RECOVERY_FILE,
    STANDBY_SIGNAL,
    render_recovery,
    render_source,
    render_standby,
    write_hba,
    write_replication,
)
from guestagent.engines.postgres_process import SUPERUSER, PostgresProcess
from guestagent.engines.tls_files import EngineTls
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

REPLICA_NAME = re.compile(r"[a-z0-9_]{1,63}")  # a slot name and a client's application_name
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}|[0-9A-Fa-f:.]{2,45}")
# Files of a data directory that describe this server, not its data: pg_rewind would
# copy the source's over them (with the source's port, memory and replicas).
LOCAL_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
LOCAL_PATTERN = "cellar*.conf"
# A clean shutdown waits for the walsenders to hand every WAL record, the shutdown
# checkpoint included, to connected standbys; a silent one holds it up to
# wal_sender_timeout (60 s by default).
STOP_WRITES_TIMEOUT = 120.0
REWIND_TIMEOUT = 3600.0
CONTROLDATA_TIMEOUT = 30.0
POLL_EVERY = 0.05


def checked_replica_name(name: str) -> str:
    """``name`` if it can name a replica's slot (``cellar_0f3a...``), else InvalidInput."""
    if not isinstance(name, str) or not REPLICA_NAME.fullmatch(name):
        raise InvalidInput(
            f"replica name {str(name)[:64]!r} is not allowed:"
            " use 1 to 63 lowercase letters, digits and underscores"
        )
    return name


def checked_account(name: str) -> str:
    """``name`` if it can be the replication account (never the superuser), else InvalidInput."""
    check_identifier("replication user", name)
    if name.lower() == SUPERUSER:
        raise InvalidInput(f"replication user {name!r} is reserved by the datastore")
    return name


def checked_source(source: ReplicationSource) -> ReplicationSource:
    """``source`` if every part of it is acceptable, else InvalidInput (never echoing the
    password)."""
    if not isinstance(source.host, str) or not HOST.fullmatch(source.host):
        raise InvalidInput(f"replication source host {str(source.host)[:64]!r} is not allowed")
    if not isinstance(source.port, int) or not 0 < source.port < 65536:
        raise InvalidInput(f"replication source port {source.port!r} is not a TCP port")
    checked_account(source.user)
    check_password(source.password, "replication")
    checked_replica_name(source.name)
    return source


def lsn_value(text: str | None) -> int:
    """A PostgreSQL LSN (``16/B374D848``) as the integer it stands for (0 for none)."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def synchronous_names(replicas: Iterable[str]) -> str:
    """``synchronous_standby_names`` for a commit that waits for any one of ``replicas``."""
    names = sorted(set(replicas))
    if not names:
        return ""
    return "ANY 1 (" + ",".join(f'"{name}"' for name in names) + ")"


def _conninfo(pairs: Iterable[tuple[str, str]]) -> str:
    """A libpq connection string of ``pairs``, every value quoted."""

    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quoted(value)}" for key, value in pairs)


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


class PostgresReplication:
    """Replication of the cluster that ``process`` runs; ``passfile`` holds the password
    this server logs in to its source with; ``archive_dir`` is where its own finished WAL
    went (a rewind reads what the server has recycled there)."""

    def __init__(
        self,
        process: PostgresProcess,
        admin: PostgresAdmin,
        passfile: Path,
        archive_dir: Path | None = None,
        recovery_timeout: float = 600.0,
        tls: EngineTls | None = None,
    ) -> None:
        self.process = process
        self.tls = tls or EngineTls.off()  # the engine's: replicas check their source
        self.admin = admin
        self.passfile = passfile
        self.archive_dir = archive_dir
        self.recovery_timeout = recovery_timeout
        self._enabling = threading.Lock()  # concurrent GRANTs fail: one at a time

    @property
    def pgdata(self) -> Path:
        return self.process.pgdata

    def standby_signalled(self) -> bool:
        """True when the server starts (or runs) as a standby."""
        return (self.pgdata / STANDBY_SIGNAL).exists()

    def in_recovery(self) -> bool:
        with self.admin.connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    # -- the source side -------------------------------------------------------------

    def enable(self, request: EnableReplicationRequest) -> None:
        """Let ``request.replicas`` stream from this primary: the replication account, one
        slot per replica (unlisted idle ones dropped), the synchronous standbys; then a
        reload."""
        with self._enabling:
            self._enable_source(request)

    def _enable_source(self, request: EnableReplicationRequest) -> None:
        user = checked_account(request.user)
        names = sorted({checked_replica_name(name) for name in request.replicas})
        check_password(request.password, "replication")
        if self.in_recovery():
            raise EngineError("a replica cannot be a replication source: promote it first")
        changed = write_hba(self.pgdata, self.process.owner, self.tls.files())
        self.admin.ensure_replication_role(user, request.password)
        self._keep_slots(names)
        sync = synchronous_names(names) if request.synchronous else ""
        changed |= write_replication(self.pgdata, render_source(sync), self.process.owner)
        if changed:
            self.admin.reload()
        with self.admin.connect() as conn:
            row = conn.execute("SELECT current_setting('wal_log_hints')").fetchone()
        if row is None or row[0] != "on":
            logger.warning("wal_log_hints is off until a restart: pg_rewind cannot rewind this")
        logger.info(
            "replication source for %d replicas (%s)",
            len(names),
            f"synchronous: {sync}" if sync else "asynchronous",
        )

    def _keep_slots(self, names: list[str]) -> None:
        """One physical slot, reserving WAL now, per name; drop unlisted idle ones."""
        with self.admin.connect() as conn:
            rows = conn.execute(
                "SELECT slot_name, active FROM pg_replication_slots"
                " WHERE slot_type = 'physical' AND NOT temporary"
            ).fetchall()
            existing = {str(name): bool(active) for name, active in rows}
            for name in names:
                if name in existing:
                    continue
                try:
                    conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
                except psycopg.errors.DuplicateObject:
                    continue
                logger.info("created replication slot %s", name)
            for name, active in sorted(existing.items()):
                if name in names:
                    continue
                if active:
                    logger.warning("kept replication slot %s: a replica streams through it", name)
                    continue
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                    continue
                logger.info("dropped replication slot %s", name)

    # -- the standby side ------------------------------------------------------------

    def start_standby(self, source: ReplicationSource) -> None:
        """Start a restored backup of ``source`` as its hot standby; returns once it takes
        read-only connections."""
        self._point_at(checked_source(source))
        started = time.monotonic()
        self.process.start(timeout=self.recovery_timeout)
        logger.info(
            "standby of %s:%d ready in %.0f ms",
            source.host,
            source.port,
            (time.monotonic() - started) * 1000,
        )

    def _point_at(self, source: ReplicationSource) -> bool:
        """Write the passfile, the standby settings and ``standby.signal``; True if the
        settings changed."""
        self._write_passfile(source)
        conninfo = _conninfo(
            [
                ("host", source.host),
                ("port", str(source.port)),
                ("user", source.user),
                ("passfile", str(self.passfile)),
                ("application_name", source.name),
                ("connect_timeout", "10"),
                *tls_settings.postgres_conninfo(self.tls.files()),
            ]
        )
        owner = self.process.owner
        changed = write_replication(self.pgdata, render_standby(conninfo, source.name), owner)
        safe_files.touch(self.pgdata / STANDBY_SIGNAL, owner, mode=0o600)
        return changed

    def _write_passfile(self, source: ReplicationSource) -> None:
        line = ":".join(["*", "*", "*", _passfile_field(source.user)])
        text = f"{line}:{_passfile_field(source.password)}\n"
        scratch = self.passfile.name + ".new"
        owner = self.process.owner
        safe_files.write_file(self.passfile, text.encode(), owner, mode=0o600, scratch=scratch)

    # -- moving the primary role -----------------------------------------------------

    def state(self) -> ReplicationState:
        """This server's role and position; a stopped one's from its control file."""
        if not self.process.running():
            return self._stopped_state()
        with self.admin.connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and row[0]:
                return self._replica_state(conn)
            row = conn.execute(
                "SELECT pg_current_wal_lsn()::text,"
                " (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')"
            ).fetchone()
        assert row is not None
        position = str(row[0])
        return ReplicationState(
            role="primary",
            position=position,
            position_value=lsn_value(position),
            replicas_connected=int(row[1]),
            writable=True,
        )

    @staticmethod
    def _replica_state(conn: psycopg.Connection[TupleRow]) -> ReplicationState:
        row = conn.execute(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
            " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,"
            " r.status, r.sender_host"
            " FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true"
        ).fetchone()
        assert row is not None
        received, replayed = lsn_value(row[0]), lsn_value(row[1])
        position = row[0] if received > replayed else row[1]
        if received <= replayed:
            lag_seconds = 0.0
        else:
            lag_seconds = -1.0 if row[2] is None else max(0.0, float(row[2]))
        return ReplicationState(
            role="replica",
            position=str(position or ""),
            position_value=max(received, replayed),
            source_connected=row[3] == "streaming",
            lag_seconds=lag_seconds,
            lag_bytes=max(0, received - replayed),
            source_host=str(row[4] or ""),
            writable=False,
        )

    def _stopped_state(self) -> ReplicationState:
        position = self.control_data().get("Latest checkpoint location", "")
        return ReplicationState(
            role="replica" if self.standby_signalled() else "primary",
            position=position,
            position_value=lsn_value(position),
            writable=False,
        )

    def stop_writes(self) -> ReplicationState:
        """Shut a primary down cleanly (fast: sessions end, open transactions roll back,
        standbys get all the WAL) and report the shutdown checkpoint. A stopped primary
        reports it again; nothing here starts the server again."""
        if self.standby_signalled():
            raise EngineError("this instance is a replica: it takes no writes to stop")
        if self.process.running():
            if self.in_recovery():
                raise EngineError("this instance is still recovering: it takes no writes")
            self.process.stop(timeout=STOP_WRITES_TIMEOUT)
        control = self.control_data()
        cluster_state = control.get("Database cluster state", "unknown")
        if cluster_state != "shut down":
            raise EngineError(f"postgres did not shut down cleanly (its state: {cluster_state})")
        state = self._stopped_state()
        logger.info("writes stopped: postgres shut down at %s", state.position)
        return state

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        """Promote this standby once it has replayed up to ``wait_for_position`` (0: at
        once), then drop its standby settings; a primary is left as it is."""
        if wait_for_position < 0:
            raise InvalidInput("the position to wait for cannot be negative")
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self.process.running():
            if not self.standby_signalled():
                logger.info("promote: this stopped instance is a primary already")
                return self._stopped_state()
            self.process.start(timeout=self.recovery_timeout)
        state = self.state()
        if state.role == "primary":
            logger.info("promote: already a primary at %s", state.position)
            return state
        if wait_for_position:
            self._wait_for(wait_for_position, deadline, timeout)
        seconds = max(10, int(deadline - time.monotonic()) + 1)
        with self.admin.connect() as conn:
            row = conn.execute(
                "SELECT pg_promote(wait => true, wait_seconds => %s)", (seconds,)
            ).fetchone()
        if row is None or not row[0]:
            raise EngineError(f"the replica did not finish its promotion within {seconds} s")
        # pg_rewind reads a source's timeline from its control file, which only shows the
        # new one after a checkpoint: until then, a diverged former primary would look in
        # line with this one.
        with self.admin.connect() as conn:
            conn.execute("CHECKPOINT")
        if write_replication(self.pgdata, "", self.process.owner):
            self.admin.reload()
        self.passfile.unlink(missing_ok=True)
        state = self.state()
        logger.info("promoted to primary at %s", state.position)
        return state

    def _wait_for(self, position: int, deadline: float, timeout: float) -> None:
        """Wait until this standby has received and replayed WAL up to ``position``."""
        while True:
            state = self.state()
            replayed = state.position_value - max(state.lag_bytes, 0)
            if state.position_value >= position and replayed >= position:
                return
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"the replica did not reach position {position} within {timeout:.0f} s:"
                    f" it has received {state.position_value} and replayed {replayed}"
                )
            time.sleep(POLL_EVERY)

    def follow(self, source: ReplicationSource) -> None:
        """Stream from ``source``: a standby is re-pointed by a reload; a primary is shut
        down, rewound onto the source's timeline and started as its standby."""
        source = checked_source(source)
        if self.process.running() and self.in_recovery():
            if self._point_at(source):
                self.admin.reload()
            logger.info("now streaming from %s:%d as %s", source.host, source.port, source.name)
            return
        if self.process.running():
            self.process.stop(timeout=STOP_WRITES_TIMEOUT)
        self._write_passfile(source)
        if not self.standby_signalled():
            self._rewind(source)
        self._forget_slots()
        self._point_at(source)
        started = time.monotonic()
        self.process.start(timeout=self.recovery_timeout)
        logger.info(
            "started as a standby of %s:%d in %.0f ms",
            source.host,
            source.port,
            (time.monotonic() - started) * 1000,
        )

    def _rewind(self, source: ReplicationSource) -> None:
        """Run pg_rewind against ``source`` (nothing to do when the histories did not
        part), keeping this server's own configuration files. WAL this server has
        recycled since the histories parted is read back from its archive while the
        archive still holds it; otherwise the rewind fails and the data must be copied
        afresh (a new backup of the source)."""
        conninfo = _conninfo(
            [
                ("host", source.host),
                ("port", str(source.port)),
                ("user", source.user),
                ("dbname", "postgres"),
                ("connect_timeout", "10"),
                *tls_settings.postgres_conninfo(self.tls.files()),
            ]
        )
        argv = [
            str(self.process.bin_dir / "pg_rewind"),
            f"--target-pgdata={self.pgdata}",
            f"--source-server={conninfo}",
        ]
        local = self._local_files()
        if self.archive_dir is not None:
            argv.append("--restore-target-wal")  # with the restore_command written here
            recovery = render_recovery(self.archive_dir).encode()
            owner = self.process.owner
            safe_files.write_file(self.pgdata / RECOVERY_FILE, recovery, owner, mode=0o644)
        started = time.monotonic()
        code, output = self.process.run_tool(
            argv, REWIND_TIMEOUT, {"PGPASSFILE": str(self.passfile)}
        )
        self._restore_local_files(local)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if code != 0:
            raise EngineError(
                f"pg_rewind failed (exit {code}): {' | '.join(lines[-3:]) or 'no output'}"
            )
        logger.info(
            "pg_rewind done in %.0f ms: %s",
            (time.monotonic() - started) * 1000,
            lines[-1] if lines else "no output",
        )

    def _local_files(self) -> dict[str, bytes]:
        names = set(LOCAL_FILES) | {path.name for path in self.pgdata.glob(LOCAL_PATTERN)}
        files = {}
        for name in sorted(names):
            try:
                files[name] = safe_files.read_bytes(self.pgdata / name)
            except FileNotFoundError:
                continue
        return files

    def _restore_local_files(self, files: dict[str, bytes]) -> None:
        """Put back this server's configuration files; drop ones it did not have."""
        for path in self.pgdata.glob(LOCAL_PATTERN):
            if path.name not in files:
                safe_files.remove(path)
        for name, data in files.items():
            safe_files.write_file(self.pgdata / name, data, self.process.owner)

    def _forget_slots(self) -> None:
        """Remove the slots a former primary kept for its replicas (the server is stopped):
        a standby would hold its WAL for them forever."""
        for slot in (self.pgdata / "pg_replslot").glob("*"):
            if slot.is_dir():
                safe_files.remove_tree(slot, trusted=self.pgdata.parent)
                logger.info("removed replication slot %s of the former primary", slot.name)

    def control_data(self) -> dict[str, str]:
        """The fields ``pg_controldata`` prints for the data directory."""
        argv = [str(self.process.bin_dir / "pg_controldata"), "-D", str(self.pgdata)]
        code, output = self.process.run_tool(argv, CONTROLDATA_TIMEOUT)
        if code != 0:
            raise EngineError(f"pg_controldata failed (exit {code}): {output.strip()[-200:]}")
        fields = {}
        for line in output.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields
