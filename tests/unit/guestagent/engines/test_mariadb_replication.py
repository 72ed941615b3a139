"""MariaDB GTID replication against real servers on 127.0.0.1, each on its own port.

A primary lets replicas in, a full backup of it seeds each replica (restore, then prepare
with ``replica_of``), and the set goes through a switchover (stop_writes, promote, follow)
and a detach (promote(0)). Waits poll with deadlines; every server is stopped and removed.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.mariadb import MariadbEngine
from guestagent.engines.mariadb_replication import gtid_seq, read_backup_gtid
from guestagent.engines.messages import (
    BackupDone,
    BackupRequest,
    Database,
    EnableReplicationRequest,
    PrepareRequest,
    ReplicationSource,
    RestoreStart,
    ServiceStatus,
    User,
)
from guestagent.errors import EngineError
from tests.unit.guestagent.support import MARIADB_BASEDIR, mariadb_engine

REPL_USER = "cellar_repl"
REPL_PASSWORD = "repl-Pw-7e21'; --"
ALICE_PASSWORD = "alice-Pw-31b0"
CAROL_PASSWORD = "carol-Pw-5d9c"
SHOP = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("alice", ALICE_PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
READ_ONLY_ERROR = 1290
ARRIVAL = 1.0  # seconds a row may take to reach a connected replica
SETTLE = 15.0  # seconds for a re-pointed replica to connect and catch up


def login(
    engine: MariadbEngine, user: str = "alice", password: str = ALICE_PASSWORD
) -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user=user,
        password=password,
        database="shop",
        connect_timeout=5,
        autocommit=True,
    )


def run(engine: MariadbEngine, statement: str, *args: object) -> list[tuple[object, ...]]:
    conn = login(engine)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, args or None)
            return list(cursor.fetchall())
    finally:
        conn.close()


def ids(engine: MariadbEngine, table: str = "items") -> list[int]:
    return [int(str(row[0])) for row in run(engine, f"SELECT id FROM {table} ORDER BY id")]


def wait_until(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` held; fails the test past ``within``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            pytest.fail(f"not reached within {within} s")
        time.sleep(0.02)
    return time.monotonic() - started


def holds(engine: MariadbEngine, item: int) -> Callable[[], bool]:
    return lambda: item in ids(engine)


def source_of(primary: MariadbEngine, name: str) -> ReplicationSource:
    return ReplicationSource(
        host="127.0.0.1",
        port=primary.options.port,
        user=REPL_USER,
        password=REPL_PASSWORD,
        name=name,
    )


def make_primary(engine: MariadbEngine, synchronous: bool = False) -> MariadbEngine:
    assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
    run(engine, "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(64)) ENGINE=InnoDB")
    run(engine, "CREATE TABLE counter (id INT PRIMARY KEY) ENGINE=InnoDB")
    run(engine, "INSERT INTO items VALUES (1, 'before the backup')")
    engine.enable_replication(
        EnableReplicationRequest(
            user=REPL_USER,
            password=REPL_PASSWORD,
            replicas=("cellar_0f3a01", "cellar_0f3a02"),
            synchronous=synchronous,
        )
    )
    return engine


def seed(primary: MariadbEngine, replica: MariadbEngine, name: str) -> None:
    """Stream a full backup of ``primary`` into ``replica`` and start it as its replica."""
    *chunks, done = list(primary.backup(BackupRequest(backup_id=f"seed-{name}")))
    assert isinstance(done, BackupDone)
    pieces = [bytes(chunk) for chunk in chunks if isinstance(chunk, bytes)]
    replica.restore(RestoreStart(format=done.format, type="full", position=0), iter(pieces))
    request = PrepareRequest(restored=True, memory_mb=256, replica_of=source_of(primary, name))
    assert replica.prepare(request) is ServiceStatus.HEALTHY


@contextlib.contextmanager
def replication_set(replicas: int) -> Iterator[list[MariadbEngine]]:
    """A primary (first) and ``replicas`` replicas seeded from it, all stopped afterwards."""
    with contextlib.ExitStack() as stack:
        primary = make_primary(stack.enter_context(mariadb_engine()))
        members = [primary]
        for number in range(1, replicas + 1):
            replica = stack.enter_context(mariadb_engine())
            seed(primary, replica, f"cellar_0f3a0{number}")
            members.append(replica)
        yield members


@pytest.fixture(scope="module")
def pair() -> Iterator[list[MariadbEngine]]:
    with replication_set(1) as members:
        yield members


def test_rows_written_on_the_primary_reach_the_replica_within_a_second(
    pair: list[MariadbEngine],
) -> None:
    primary, replica = pair
    assert ids(replica) == [1]  # from the backup
    for n in range(2, 12):
        run(primary, "INSERT INTO items VALUES (%s, %s)", n, f"item {n}")
    took = wait_until(lambda: ids(replica) == list(range(1, 12)), ARRIVAL)
    assert took <= ARRIVAL
    assert replica.status().status is ServiceStatus.HEALTHY


def test_a_user_cannot_write_on_the_replica(pair: list[MariadbEngine]) -> None:
    primary, replica = pair
    assert primary.create_user(User("carol", CAROL_PASSWORD, databases=("shop",)))
    wait_until(lambda: "carol" in {user.name for user in replica.list_users()}, ARRIVAL)
    conn = login(replica, "carol", CAROL_PASSWORD)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM items")
            assert cursor.fetchone()
            with pytest.raises(pymysql.MySQLError) as refused:
                cursor.execute("INSERT INTO items VALUES (999, 'on the replica')")
    finally:
        conn.close()
    assert refused.value.args[0] == READ_ONLY_ERROR
    assert "read-only" in str(refused.value.args[1])
    assert 999 not in ids(primary) and 999 not in ids(replica)
    assert replica.admin.variable("read_only") == "1"
    assert "read_only = ON" in (replica.data_dir / "cellar-replication.cnf").read_text()


def test_replication_state_on_both_sides(pair: list[MariadbEngine]) -> None:
    primary, replica = pair
    run(primary, "INSERT INTO items VALUES (500, 'state')")
    wait_until(lambda: 500 in ids(replica), ARRIVAL)
    wait_until(lambda: replica.replication_state().lag_bytes == 0, ARRIVAL)
    on_primary = primary.replication_state()
    on_replica = replica.replication_state()
    assert on_primary.role == "primary" and on_primary.writable
    assert on_primary.replicas_connected == 1
    assert on_primary.position == primary.admin.variable("gtid_binlog_pos")
    assert on_primary.position_value == gtid_seq(on_primary.position) > 0
    assert on_replica.role == "replica" and not on_replica.writable
    assert on_replica.source_connected
    assert on_replica.source_host == "127.0.0.1"
    assert on_replica.position_value == on_primary.position_value
    assert on_replica.lag_seconds == 0.0
    assert on_replica.lag_bytes == 0
    ids_of = {int(engine.admin.variable("server_id") or 0) for engine in pair}
    assert len(ids_of) == 2 and 0 not in ids_of and 1 not in ids_of
    assert replica.admin.variable("log_slave_updates") == "1"
    assert replica.admin.variable("gtid_strict_mode") == "1"


def test_metrics_show_the_lag_on_the_replica_only_while_it_can_say(
    pair: list[MariadbEngine],
) -> None:
    primary, replica = pair
    run(primary, "INSERT INTO items VALUES (510, 'metrics')")
    wait_until(lambda: 510 in ids(replica), ARRIVAL)

    assert "replication_lag_seconds" not in primary.metrics()
    wait_until(lambda: replica.metrics().get("replication_lag_seconds") == 0.0, ARRIVAL)
    with replica.admin.connect() as cursor:
        cursor.execute("STOP SLAVE SQL_THREAD")
    try:
        assert "replication_lag_seconds" not in replica.metrics()  # NULL: nothing applies
    finally:
        with replica.admin.connect() as cursor:
            cursor.execute("START SLAVE SQL_THREAD")
    wait_until(lambda: "replication_lag_seconds" in replica.metrics(), ARRIVAL)


def test_a_restarted_replica_stays_a_read_only_replica(pair: list[MariadbEngine]) -> None:
    primary, replica = pair
    server_id = replica.admin.variable("server_id")
    replica.stop()
    run(primary, "INSERT INTO items VALUES (600, 'while the replica was down')")
    replica.start()
    assert replica.status().status is ServiceStatus.HEALTHY
    assert replica.admin.variable("read_only") == "1"
    assert replica.admin.variable("server_id") == server_id
    wait_until(lambda: 600 in ids(replica), SETTLE)
    assert replica.replication_state().role == "replica"


def test_promote_waits_no_longer_than_its_timeout(pair: list[MariadbEngine]) -> None:
    primary, replica = pair
    target = primary.replication_state().position_value + 1000
    started = time.monotonic()
    with pytest.raises(EngineError, match=f"not {target}, in time"):
        replica.promote(target, timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert replica.replication_state().role == "replica"
    assert replica.admin.variable("read_only") == "1"


def test_bad_requests_are_refused(pair: list[MariadbEngine]) -> None:
    primary, replica = pair
    good = source_of(primary, "cellar_0f3a01")
    for bad in (
        ReplicationSource("host; DROP", 3306, REPL_USER, REPL_PASSWORD),
        ReplicationSource("127.0.0.1", 0, REPL_USER, REPL_PASSWORD),
        ReplicationSource("127.0.0.1", 3306, "repl'--", REPL_PASSWORD),
        ReplicationSource("127.0.0.1", 3306, REPL_USER, ""),
        ReplicationSource("127.0.0.1", 3306, REPL_USER, REPL_PASSWORD, name="x'; --"),
    ):
        with pytest.raises(InvalidInput):
            replica.follow(bad)
    with pytest.raises(InvalidInput, match="replica name"):
        primary.enable_replication(
            EnableReplicationRequest(REPL_USER, REPL_PASSWORD, replicas=("cellar-0f3a",))
        )
    with pytest.raises(InvalidInput, match="enable replication on its primary"):
        replica.enable_replication(EnableReplicationRequest(REPL_USER, REPL_PASSWORD))
    with mariadb_engine() as fresh:
        with pytest.raises(InvalidInput, match="restored backup"):
            fresh.prepare(PrepareRequest(replica_of=good))
        assert fresh.status().status is ServiceStatus.NEW
    assert replica.replication_state().source_connected  # nothing changed


def test_enable_replication_is_idempotent_and_can_make_commits_semi_synchronous(
    pair: list[MariadbEngine],
) -> None:
    primary, replica = pair
    request = EnableReplicationRequest(REPL_USER, REPL_PASSWORD, synchronous=True)
    primary.enable_replication(request)
    primary.enable_replication(request)
    assert primary.admin.variable("rpl_semi_sync_master_enabled") == "1"
    with primary.admin.connect() as cursor:
        cursor.execute("SHOW GRANTS FOR %s@'%%'", (REPL_USER,))
        grants = " ".join(str(row[0]) for row in cursor.fetchall())
    for right in ("REPLICATION SLAVE", "BINLOG MONITOR", "SLAVE MONITOR"):
        assert right in grants
    run(primary, "INSERT INTO items VALUES (700, 'semi-synchronous')")
    assert 700 in ids(replica)  # the commit returned once the replica had it
    status = semi_sync_status(primary)
    assert status["Rpl_semi_sync_master_clients"] == "1"
    assert int(status["Rpl_semi_sync_master_yes_tx"]) >= 1
    assert status["Rpl_semi_sync_master_no_tx"] == "0"
    primary.enable_replication(EnableReplicationRequest(REPL_USER, REPL_PASSWORD))
    assert primary.admin.variable("rpl_semi_sync_master_enabled") == "0"
    assert (
        "rpl_semi_sync_master_enabled = OFF"
        in (primary.data_dir / "cellar-replication.cnf").read_text()
    )


def semi_sync_status(engine: MariadbEngine) -> dict[str, str]:
    with engine.admin.connect() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")
        return {str(name): str(value) for name, value in cursor.fetchall()}


class CounterWriter:
    """A client that inserts 1, 2, 3, ... into ``counter`` until the server refuses it."""

    def __init__(self, engine: MariadbEngine) -> None:
        self.engine = engine
        self.acknowledged = 0
        self.refusal: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="counter-writer", daemon=True)

    def _run(self) -> None:
        conn = login(self.engine)
        try:
            with conn.cursor() as cursor:
                while True:
                    cursor.execute("INSERT INTO counter VALUES (%s)", (self.acknowledged + 1,))
                    self.acknowledged += 1
        except pymysql.MySQLError as exc:
            self.refusal = exc
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def test_switchover_keeps_every_acknowledged_write_and_repoints_the_set() -> None:
    with replication_set(2) as (old, new, other):
        idle = login(old)
        writer = CounterWriter(old)
        writer.thread.start()
        wait_until(lambda: writer.acknowledged >= 50, 10.0)

        final = old.stop_writes()
        with pytest.raises(pymysql.OperationalError), idle.cursor() as cursor:
            cursor.execute("SELECT 1")  # its session was ended
        idle.close()
        writer.thread.join(timeout=10)
        assert not writer.thread.is_alive() and writer.refusal is not None
        assert final.role == "primary" and not final.writable
        assert final.position == old.admin.variable("gtid_binlog_pos")
        assert final.position_value == gtid_seq(final.position)
        on_old = ids(old, "counter")
        assert on_old[: writer.acknowledged] == list(range(1, writer.acknowledged + 1))
        with pytest.raises(pymysql.MySQLError) as refused:
            run(old, "INSERT INTO items VALUES (800, 'after stop_writes')")
        assert refused.value.args[0] == READ_ONLY_ERROR

        promoted = new.promote(final.position_value, timeout=10.0)
        assert promoted.role == "primary" and promoted.writable
        assert promoted.position_value == final.position_value
        assert ids(new, "counter") == on_old  # every acknowledged write, nothing more
        assert new.replication_state().role == "primary"
        assert "read_only = OFF" in (new.data_dir / "cellar-replication.cnf").read_text()
        new.enable_replication(EnableReplicationRequest(REPL_USER, REPL_PASSWORD))

        old.follow(source_of(new, "cellar_0f3a00"))
        other.follow(source_of(new, "cellar_0f3a02"))
        run(new, "INSERT INTO items VALUES (900, 'after the switchover')")
        for member in (old, other):
            wait_until(holds(member, 900), SETTLE)
            assert ids(member, "counter") == on_old
            state = member.replication_state()
            assert state.role == "replica" and state.source_connected and not state.writable
            assert member.status().status is ServiceStatus.HEALTHY
        wait_until(lambda: new.replication_state().replicas_connected == 2, SETTLE)
        assert old.admin.variable("read_only") == "1"
        assert new.replication_state().position_value == final.position_value + 2

        old.follow(source_of(new, "cellar_0f3a00"))  # again: nothing breaks
        run(new, "INSERT INTO items VALUES (901, 'after a second follow')")
        wait_until(lambda: 901 in ids(old), SETTLE)


def test_promote_zero_detaches_a_replica_into_a_writable_standalone() -> None:
    with replication_set(1) as (primary, replica):
        run(primary, "INSERT INTO items VALUES (2, 'replicated')")
        wait_until(lambda: 2 in ids(replica), ARRIVAL)
        last = primary.replication_state().position_value

        state = replica.promote(0, timeout=0.0)
        assert state.role == "primary" and state.writable
        assert state.position_value == last
        run(replica, "INSERT INTO items VALUES (3, 'on the standalone')")
        assert replica.replication_state().position_value == last + 1  # numbered after
        run(primary, "INSERT INTO items VALUES (4, 'not for the standalone')")
        time.sleep(0.3)
        assert ids(replica) == [1, 2, 3]
        assert ids(primary) == [1, 2, 4]
        assert wait_until(lambda: primary.replication_state().replicas_connected == 0, SETTLE) >= 0
        assert replica.promote(5, timeout=0.0).writable  # a no-op on a primary
        replica.restart()
        assert replica.admin.variable("read_only") == "0"
        assert replica.replication_state().role == "primary"


def test_the_backup_gtid_is_read_from_the_binlog_info(tmp_path: Path) -> None:
    info = tmp_path / "xtrabackup_binlog_info"
    info.write_text("mariadb-bin.000003\t385\t0-1-17,1-7-5\n")
    assert read_backup_gtid(info) == "0-1-17,1-7-5"
    info.write_text("mariadb-bin.000001\t329\n")
    assert read_backup_gtid(info) == ""
    info.write_text("mariadb-bin.000001\t329\t0-1-2'; DROP\n")
    with pytest.raises(EngineError, match="not a GTID position"):
        read_backup_gtid(info)
    with pytest.raises(EngineError, match="no binary log position"):
        read_backup_gtid(tmp_path / "missing")
    assert gtid_seq("0-1-17,1-7-50") == 17
    assert gtid_seq("1-7-50,2-3-4") == 50
    assert gtid_seq("") == 0


@pytest.fixture(scope="module", autouse=True)
def _tools_installed() -> None:
    for tool in ("mariabackup", "mbstream"):
        if shutil.which(tool, path=str(MARIADB_BASEDIR / "bin")) is None:
            pytest.skip(f"{tool} is not installed (package mariadb-backup)")
