"""Streaming replication of PostgresEngine, on real PostgreSQL 15 servers on loopback.

Each test builds its own set the way the control plane does: a prepared primary made a
source with ``enable_replication``, its full backup restored into each new instance,
then ``prepare(restored=True, replica_of=...)``. Every wait has a deadline; the engines
stop and their directories go when a test ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    BackupRequest,
    Database,
    EnableReplicationRequest,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
    ServiceStatus,
    User,
)
from guestagent.engines.postgres import PostgresEngine
from guestagent.engines.postgres_config import REPLICATION_FILE, STANDBY_SIGNAL
from guestagent.engines.postgres_replication import lsn_value, synchronous_names
from guestagent.errors import EngineError
from tests.unit.guestagent.support import json_log, postgres_engine

PASSWORD = "bob-Replica-pw-27182"
REPL_USER = "cellar_repl"
REPL_PASSWORD = "repl-Secret-pw-16180"
PRIMARY = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("bob", PASSWORD, databases=("shop",)),),
    memory_mb=128,
)
T = TypeVar("T")


def source_of(engine: PostgresEngine, name: str) -> ReplicationSource:
    return ReplicationSource(
        host="127.0.0.1",
        port=engine.options.port,
        user=REPL_USER,
        password=REPL_PASSWORD,
        name=name,
    )


def enable(engine: PostgresEngine, *replicas: str, synchronous: bool = False) -> None:
    engine.enable_replication(
        EnableReplicationRequest(REPL_USER, REPL_PASSWORD, tuple(replicas), synchronous)
    )


def login(engine: PostgresEngine) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user="bob",
        password=PASSWORD,
        dbname="shop",
        connect_timeout=5,
        autocommit=True,
    )


def write(engine: PostgresEngine, *items: str) -> None:
    with login(engine) as conn:
        for item in items:
            conn.execute("INSERT INTO notes (item) VALUES (%s)", (item,))


def items(engine: PostgresEngine) -> set[str]:
    with login(engine) as conn:
        return {str(row[0]) for row in conn.execute("SELECT item FROM notes")}


def eventually(check: Callable[[], T | None], within: float, what: str) -> T:
    """``check()`` once it is truthy; the test fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result: T | None
        try:
            result = check()
        except (psycopg.OperationalError, EngineError):
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} within {within} s")
        time.sleep(0.02)


def slots(engine: PostgresEngine) -> dict[str, bool]:
    with engine.admin.connect() as conn:
        rows = conn.execute("SELECT slot_name, active FROM pg_replication_slots").fetchall()
    return {str(name): bool(active) for name, active in rows}


def caught_up(replica: PostgresEngine, primary: PostgresEngine) -> ReplicationState | None:
    """The replica's state once it has replayed everything the primary wrote so far."""
    target = primary.replication_state().position_value
    state = replica.replication_state()
    done = state.source_connected and state.lag_bytes == 0 and state.position_value >= target
    return state if done else None


def seed(primary: PostgresEngine, replica: PostgresEngine, name: str) -> None:
    """Start ``replica`` from a full backup of ``primary``, as the control plane does."""
    pieces = primary.backup(BackupRequest(backup_id=f"seed-{name}"))
    chunks = (piece for piece in pieces if isinstance(piece, bytes))
    replica.restore(RestoreStart(format="tar"), chunks)
    request = PrepareRequest(restored=True, memory_mb=128, replica_of=source_of(primary, name))
    assert replica.prepare(request) is ServiceStatus.HEALTHY


@contextlib.contextmanager
def replicated(count: int, synchronous: bool = False) -> Iterator[list[PostgresEngine]]:
    """A primary (first) and ``count`` replicas named ``cellar_r0``, ``cellar_r1``, ..."""
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(postgres_engine())
        primary.prepare(PRIMARY)
        with login(primary) as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, item text NOT NULL)")
        names = [f"cellar_r{n}" for n in range(count)]
        enable(primary, *names, synchronous=synchronous)
        engines = [primary]
        for name in names:
            replica = stack.enter_context(postgres_engine())
            seed(primary, replica, name)
            engines.append(replica)
        yield engines


def test_a_seeded_replica_streams_rows_within_a_second_and_keeps_no_password() -> None:
    with replicated(1) as (primary, replica):
        assert replica.prepared()
        assert replica.status().status is ServiceStatus.HEALTHY
        assert (replica.pgdata / STANDBY_SIGNAL).exists()
        with primary.admin.connect() as conn:
            streaming = eventually(
                lambda: conn.execute(
                    "SELECT application_name, state FROM pg_stat_replication"
                    " WHERE state = 'streaming'"
                ).fetchall(),
                5.0,
                "the replica streaming",
            )
        assert streaming == [("cellar_r0", "streaming")]
        assert slots(primary) == {"cellar_r0": True}
        for path in replica.pgdata.glob("*.conf"):
            assert REPL_PASSWORD not in path.read_text(), path.name
        assert (replica.replication.passfile.stat().st_mode & 0o777) == 0o600

        write(primary, "first", "second")
        eventually(lambda: {"first", "second"} <= items(replica), 1.0, "rows replicated")

        # Its databases and users are the primary's, and it archives nothing itself.
        assert {"shop"} <= {d.name for d in replica.list_databases()}
        assert replica.list_archive(rotate=True) == []


def test_writing_on_a_replica_fails_as_read_only() -> None:
    with replicated(1) as (_, replica):
        with login(replica) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO notes (item) VALUES ('nope')")
        with pytest.raises(EngineError, match="read-only"):
            replica.create_user(User("carol", PASSWORD))
        with pytest.raises(EngineError, match="a replica cannot be a replication source"):
            enable(replica, "cellar_x")
        with pytest.raises(EngineError, match="a replica"):
            replica.stop_writes()
        assert replica.process.running()


def test_replication_state_on_both_sides_and_after_writes_stop() -> None:
    with replicated(1) as (primary, replica):
        write(primary, *(f"row-{n}" for n in range(100)))
        side = eventually(lambda: caught_up(replica, primary), 5.0, "replica caught up")

        main = primary.replication_state()
        assert main.role == "primary" and main.writable
        assert main.replicas_connected == 1
        assert main.position_value == lsn_value(main.position) > 0
        assert side.role == "replica" and not side.writable
        assert side.source_connected and side.source_host == "127.0.0.1"
        assert side.lag_bytes == 0 and side.lag_seconds == 0.0
        assert side.position_value == lsn_value(side.position)
        assert side.position_value <= main.position_value

        with pytest.raises(EngineError, match="did not reach position"):
            replica.promote(main.position_value + 10**9, timeout=0.5)
        assert replica.replication_state().role == "replica"

        final = primary.stop_writes()
        assert not primary.process.running()
        assert primary.status().status is ServiceStatus.SHUTDOWN
        assert final.role == "primary" and not final.writable
        assert final.position_value >= main.position_value
        assert primary.replication_state() == final
        assert primary.stop_writes() == final, "a retry reports the same position"
        # The replica got the shutdown checkpoint before the primary went away.
        reached = eventually(
            lambda: replica.replication_state().position_value > final.position_value,
            5.0,
            "the replica received the shutdown checkpoint",
        )
        assert reached
        assert not primary.process.running(), "nothing started the old primary again"


def test_metrics_show_a_lag_on_the_replica_only_while_it_has_wal_to_replay() -> None:
    with replicated(1) as (primary, replica):
        write(primary, "first")
        eventually(lambda: caught_up(replica, primary), 5.0, "replica caught up")
        assert "replication_lag_seconds" not in primary.metrics()
        assert replica.metrics()["replication_lag_seconds"] == 0.0

        with replica.admin.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        write(primary, "second")
        eventually(lambda: replica.replication_state().lag_bytes > 0, 5.0, "WAL not replayed")
        time.sleep(0.3)
        assert replica.metrics()["replication_lag_seconds"] >= 0.3

        with replica.admin.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        eventually(lambda: caught_up(replica, primary), 5.0, "replica caught up again")
        assert replica.metrics()["replication_lag_seconds"] == 0.0


def test_enable_replication_keeps_exactly_the_listed_slots_and_the_rewind_grants() -> None:
    with replicated(1) as (primary, _):
        eventually(lambda: slots(primary).get("cellar_r0"), 5.0, "cellar_r0 streams")
        enable(primary, "cellar_r0", "cellar_new")
        enable(primary, "cellar_r0", "cellar_new")  # idempotent
        assert slots(primary) == {"cellar_r0": True, "cellar_new": False}
        with primary.admin.connect() as conn:
            row = conn.execute(
                "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots"
                " WHERE slot_name = 'cellar_new'"
            ).fetchone()
        assert row == (True,), "the slot reserves WAL at once"

        enable(primary)  # an idle unlisted slot goes, a streaming one stays
        assert slots(primary) == {"cellar_r0": True}

        with primary.admin.connect() as conn:
            setting = conn.execute("SHOW synchronous_standby_names").fetchone()
            granted = conn.execute(
                "SELECT bool_and(has_function_privilege(%s, f, 'EXECUTE')) FROM unnest(ARRAY["
                " 'pg_ls_dir(text, boolean, boolean)', 'pg_stat_file(text, boolean)',"
                " 'pg_read_binary_file(text)',"
                " 'pg_read_binary_file(text, bigint, bigint, boolean)']) AS f",
                (REPL_USER,),
            ).fetchone()
            hints = conn.execute("SHOW wal_log_hints").fetchone()
        assert setting == ("",)
        assert granted == (True,)
        assert hints == ("on",)
        with psycopg.connect(
            host="127.0.0.1",
            port=primary.options.port,
            user=REPL_USER,
            password=REPL_PASSWORD,
            dbname="postgres",
            connect_timeout=5,
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

        for name in ("Cellar_R0", "cellar-r0", "x" * 64, ""):
            with pytest.raises(InvalidInput, match="replica name"):
                enable(primary, name)
        with pytest.raises(InvalidInput, match="reserved"):
            primary.enable_replication(EnableReplicationRequest("postgres", REPL_PASSWORD))


def test_synchronous_commit_waits_for_a_running_replica() -> None:
    with replicated(1, synchronous=True) as (primary, replica):
        assert synchronous_names(["cellar_r0"]) == 'ANY 1 ("cellar_r0")'
        with primary.admin.connect() as conn:
            setting = conn.execute("SHOW synchronous_standby_names").fetchone()
        assert setting == ('ANY 1 ("cellar_r0")',)
        eventually(lambda: caught_up(replica, primary), 5.0, "replica streaming")
        write(primary, "while-running")

        replica.stop()
        done = threading.Event()
        pid: list[int] = []

        def commit() -> None:
            with login(primary) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                pid.append(int(row[0]))
                conn.execute("INSERT INTO notes (item) VALUES ('while-stopped')")
            done.set()

        writer = threading.Thread(target=commit, daemon=True)
        writer.start()
        try:
            assert not done.wait(1.5), "the commit waited for the stopped replica"
            with primary.admin.connect() as conn:
                row = conn.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid[0],)
                ).fetchone()
            assert row == ("SyncRep",)
            replica.start()
            assert done.wait(20.0), "the commit returned once the replica was back"
        finally:
            if not done.is_set() and pid:
                with primary.admin.connect() as conn:
                    conn.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
            writer.join(timeout=10.0)
        assert {"while-running", "while-stopped"} <= items(replica)


def test_switchover_keeps_every_write_and_the_old_primary_follows_the_new_one() -> None:
    with replicated(1) as (old, new):
        counted = [f"count-{n}" for n in range(200)]
        write(old, *counted)
        final = old.stop_writes()

        promoted = new.promote(final.position_value, timeout=30.0)
        assert promoted.role == "primary" and promoted.writable
        assert promoted.position_value >= final.position_value
        assert set(counted) <= items(new)
        assert not (new.pgdata / REPLICATION_FILE).exists()
        assert new.promote(0, timeout=5.0).role == "primary", "a no-op on a primary"

        enable(new, "cellar_old")
        with json_log() as log:
            old.follow(source_of(new, "cellar_old"))
        assert REPL_PASSWORD not in log.text
        assert old.status().status is ServiceStatus.HEALTHY
        write(new, "after-switch")
        eventually(lambda: "after-switch" in items(old), 10.0, "the old primary follows")
        side = eventually(lambda: caught_up(old, new), 10.0, "the old primary caught up")
        assert side.role == "replica" and side.source_connected
        assert new.replication_state().replicas_connected == 1
        assert set(counted) <= items(old)

        # A restart keeps each in its new role.
        new.restart()
        old.restart()
        assert new.replication_state().writable
        assert old.replication_state().role == "replica"
        write(new, "after-restart")
        eventually(lambda: "after-restart" in items(old), 10.0, "streaming after restarts")


def test_promote_at_once_detaches_a_standalone_writable_instance() -> None:
    with replicated(1) as (primary, replica):
        write(primary, "shared")
        eventually(lambda: "shared" in items(replica), 5.0, "rows replicated")

        state = replica.promote(0, timeout=30.0)
        assert state.role == "primary" and state.writable
        assert not (replica.pgdata / STANDBY_SIGNAL).exists()
        write(replica, "mine")
        write(primary, "theirs")
        time.sleep(0.5)
        assert "theirs" not in items(replica)
        assert "mine" not in items(primary)

        replica.restart()
        assert replica.replication_state().writable, "a restart keeps it a primary"
        assert replica.replication_state().replicas_connected == 0
        replica.create_database(Database("detached"))
        assert replica.list_archive(rotate=True), "it archives its WAL as a primary"


def test_a_diverged_former_primary_is_rewound_onto_the_new_timeline() -> None:
    with replicated(1) as (old, new):
        write(old, "common")
        eventually(lambda: "common" in items(new), 5.0, "rows replicated")
        new.promote(0, timeout=30.0)  # a failover while the old one still runs
        write(old, "lost")
        write(new, "kept")
        with old.admin.connect() as conn:
            conn.execute("CHECKPOINT")

        enable(new, "cellar_old")
        old.follow(source_of(new, "cellar_old"))
        eventually(lambda: "kept" in items(old), 10.0, "the rewound primary follows")
        assert items(old) == {"common", "kept"}
        state = old.replication_state()
        assert state.role == "replica" and not state.writable
        # pg_rewind copied the new primary's files; this server kept its own settings.
        with old.admin.connect() as conn:
            port = conn.execute("SHOW port").fetchone()
        assert port == (str(old.options.port),)


def test_a_second_replica_follows_the_promoted_one() -> None:
    with replicated(2) as (primary, first, second):
        write(primary, "before")
        eventually(lambda: "before" in items(second), 5.0, "rows replicated")
        final = primary.stop_writes()
        first.promote(final.position_value, timeout=30.0)
        enable(first, "cellar_r1", "cellar_old")

        second.follow(source_of(first, "cellar_r1"))
        write(first, "after")
        eventually(lambda: "after" in items(second), 20.0, "the second replica follows")
        state = eventually(lambda: caught_up(second, first), 10.0, "caught up")
        assert state.source_host == "127.0.0.1"
        assert slots(first) == {"cellar_r1": True, "cellar_old": False}
        assert first.replication_state().replicas_connected == 1
        assert second.status().status is ServiceStatus.HEALTHY


def test_a_replica_needs_a_restored_backup_and_a_valid_source() -> None:
    with postgres_engine() as engine:
        good = ReplicationSource("10.0.0.5", 5432, REPL_USER, REPL_PASSWORD, "cellar_0f3a")
        with pytest.raises(InvalidInput, match="restored backup"):
            engine.prepare(PrepareRequest(replica_of=good))
        bad = [
            ReplicationSource("host;rm", 5432, REPL_USER, REPL_PASSWORD, "cellar_a"),
            ReplicationSource("db", 0, REPL_USER, REPL_PASSWORD, "cellar_a"),
            ReplicationSource("db", 5432, "postgres", REPL_PASSWORD, "cellar_a"),
            ReplicationSource("db", 5432, REPL_USER, "", "cellar_a"),
            ReplicationSource("db", 5432, REPL_USER, REPL_PASSWORD, "Cellar A"),
        ]
        for source in bad:
            with pytest.raises(InvalidInput):
                engine.prepare(PrepareRequest(restored=True, replica_of=source))
            with pytest.raises(InvalidInput):
                engine.follow(source)
        assert engine.status().status is ServiceStatus.NEW
