"""PostgresEngine against a real PostgreSQL 15 server in a temporary data directory."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    GrantAccessRequest,
    PrepareRequest,
    RevokeAccessRequest,
    ServiceStatus,
    User,
)
from guestagent.engines.postgres import PostgresEngine
from guestagent.engines.postgres_admin import replay_lag
from guestagent.errors import EngineError, NotPrepared
from tests.unit.guestagent.support import postgres_engine

ALICE_PASSWORD = "alice-Pw-9f2e'; DROP ROLE x; --"
SHOP = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("alice", ALICE_PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
BAD_NAMES = ['bad"name', "x;drop", "a b", "1abc", "", "x" * 64, "postgres", "pg_secret"]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
        yield engine


@pytest.fixture
def fresh() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        yield engine


def login(engine: PostgresEngine, user: str, password: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=5,
    )


def test_prepare_creates_the_databases_and_users(pg: PostgresEngine) -> None:
    assert pg.status().status is ServiceStatus.HEALTHY
    assert "shop" in [d.name for d in pg.list_databases()]
    assert User("alice", databases=("shop",)) in pg.list_users()
    assert (pg.data_dir / "pgdata" / "PG_VERSION").read_text().strip() == "15"


def test_listings_leave_out_the_engines_own_databases_and_roles(pg: PostgresEngine) -> None:
    databases = {d.name for d in pg.list_databases()}
    users = {u.name for u in pg.list_users()}

    assert databases.isdisjoint({"postgres", "template0", "template1"})
    assert "postgres" not in users
    assert not [name for name in users if name.startswith("pg_")]
    assert all(u.password == "" for u in pg.list_users())


def test_user_logs_in_over_tcp_and_creates_a_table(pg: PostgresEngine) -> None:
    with login(pg, "alice", ALICE_PASSWORD, "shop") as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        conn.execute("INSERT INTO orders (item) VALUES ('apples'), ('pears')")
        conn.commit()
        rows = conn.execute("SELECT item FROM orders ORDER BY id").fetchall()

    assert rows == [("apples",), ("pears",)]


def test_wrong_password_and_ungranted_database_are_refused(pg: PostgresEngine) -> None:
    assert pg.create_database(Database("private_db")) is True

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg, "alice", "not-the-password", "shop")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        login(pg, "alice", ALICE_PASSWORD, "private_db")


def test_a_new_password_replaces_the_old_one(pg: PostgresEngine) -> None:
    pg.create_database(Database("pwdb"))
    pg.create_user(User("pw_changer", "first-pass-1", databases=("pwdb",)))

    assert pg.change_password(User("pw_changer", "second-pass-2")) is True
    assert pg.change_password(User("nobody", "second-pass-2")) is False
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg, "pw_changer", "first-pass-1", "pwdb")
    with login(pg, "pw_changer", "second-pass-2", "pwdb") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pw_changer",)
    with pytest.raises(InvalidInput, match="control characters"):
        pg.change_password(User("pw_changer", "bad\npass"))


def test_access_is_granted_and_revoked_per_database(pg: PostgresEngine) -> None:
    for name in ("ga_one", "ga_two"):
        pg.create_database(Database(name))
    pg.create_user(User("granted_user", "dave-pass-1", databases=("ga_one",)))

    pg.grant_access(GrantAccessRequest("granted_user", databases=("ga_two",)))
    assert User("granted_user", databases=("ga_one", "ga_two")) in pg.list_users()
    with login(pg, "granted_user", "dave-pass-1", "ga_two") as conn:
        conn.execute("CREATE TABLE t (v int)")  # every right on the granted database
        conn.commit()
    assert pg.revoke_access(RevokeAccessRequest("granted_user", "ga_two")) is True
    assert pg.revoke_access(RevokeAccessRequest("granted_user", "ga_two")) is False
    assert User("granted_user", databases=("ga_one",)) in pg.list_users()
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        login(pg, "granted_user", "dave-pass-1", "ga_two")
    with pytest.raises(InvalidInput, match="does not exist"):
        pg.grant_access(GrantAccessRequest("granted_user", databases=("no_such_db",)))
    with pytest.raises(InvalidInput, match="does not exist"):
        pg.grant_access(GrantAccessRequest("nobody", databases=("ga_one",)))


def test_root_enable_lets_the_superuser_in_over_tcp(pg: PostgresEngine) -> None:
    with pytest.raises(psycopg.OperationalError):
        login(pg, "postgres", "root-Pass-9", "postgres")

    assert pg.enable_root("root-Pass-9") == "postgres"
    with login(pg, "postgres", "root-Pass-9", "postgres") as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (True,)

    assert pg.disable_root() is True
    with pytest.raises(psycopg.OperationalError):
        login(pg, "postgres", "root-Pass-9", "postgres")
    assert pg.disable_root() is False
    assert pg.list_databases() is not None  # the agent's own login still works


def test_create_list_and_delete_a_database_idempotently(pg: PostgresEngine) -> None:
    assert pg.create_database(Database("reports")) is True
    assert pg.create_database(Database("reports")) is False
    assert "reports" in [d.name for d in pg.list_databases()]

    assert pg.delete_database(DeleteDatabaseRequest("reports")) is True
    assert pg.delete_database(DeleteDatabaseRequest("reports")) is False
    assert "reports" not in [d.name for d in pg.list_databases()]


def test_database_with_encoding_and_collation(pg: PostgresEngine) -> None:
    assert pg.create_database(Database("legacy", character_set="LATIN1", collate="C")) is True

    assert Database("legacy", "LATIN1", "C") in pg.list_databases()
    with pytest.raises(InvalidInput, match="not a valid encoding"):
        pg.create_database(Database("broken", character_set="no_such_encoding"))
    with pytest.raises(InvalidInput, match="not allowed"):
        pg.create_database(Database("broken", collate="C'; DROP"))
    assert "broken" not in [d.name for d in pg.list_databases()]


def test_database_with_open_connections_is_dropped(pg: PostgresEngine) -> None:
    pg.create_database(Database("busy"))
    pg.create_user(User("busy_user", "busy-pw-1", databases=("busy",)))
    conn = login(pg, "busy_user", "busy-pw-1", "busy")
    try:
        assert pg.delete_database(DeleteDatabaseRequest("busy")) is True
    finally:
        conn.close()

    assert "busy" not in [d.name for d in pg.list_databases()]


def test_create_list_and_delete_a_user_idempotently(pg: PostgresEngine) -> None:
    pg.create_database(Database("crm"))
    bob = User("bob", "b0b-pass", databases=("crm",))

    assert pg.create_user(bob) is True
    assert pg.create_user(bob) is False
    assert User("bob", databases=("crm",)) in pg.list_users()

    assert pg.delete_user(DeleteUserRequest("bob")) is True
    assert pg.delete_user(DeleteUserRequest("bob")) is False
    assert "bob" not in [u.name for u in pg.list_users()]
    with pytest.raises(psycopg.OperationalError):
        login(pg, "bob", "b0b-pass", "crm")


def test_deleting_a_user_keeps_the_tables_it_owned(pg: PostgresEngine) -> None:
    pg.create_database(Database("ledger"))
    pg.create_user(User("carol", "carol-pw", databases=("ledger",)))
    with login(pg, "carol", "carol-pw", "ledger") as conn:
        conn.execute("CREATE TABLE entries (amount int)")
        conn.execute("INSERT INTO entries VALUES (42)")
        conn.commit()

    assert pg.delete_user(DeleteUserRequest("carol")) is True

    with psycopg.connect(**pg.process.conninfo("ledger")) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'entries'")
        assert owner.fetchone() == ("postgres",)
        assert conn.execute("SELECT amount FROM entries").fetchall() == [(42,)]


def test_user_for_a_missing_database_is_refused(pg: PostgresEngine) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        pg.create_user(User("dave", "dave-pw", databases=("nowhere",)))

    assert "dave" not in [u.name for u in pg.list_users()]


def with_table(engine: PostgresEngine, dbname: str) -> None:
    """Create ``dbname`` with a table ``items`` (a serial id, one row), owned by postgres."""
    engine.create_database(Database(dbname))
    with psycopg.connect(**engine.process.conninfo(dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, v text)")
        conn.execute("INSERT INTO items (v) VALUES ('first')")


def test_read_access_can_select_but_not_change_anything(pg: PostgresEngine) -> None:
    with_table(pg, "ro_db")

    reader = User("reader", "reader-pw-1", databases=("ro_db",), access="read")
    assert pg.create_user(reader) is True

    with login(pg, "reader", "reader-pw-1", "ro_db") as conn:
        conn.autocommit = True
        assert conn.execute("SELECT v FROM items").fetchall() == [("first",)]
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO items (v) VALUES ('second')")
        conn.execute("SET default_transaction_read_only = off")  # the grants refuse it too
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO items (v) VALUES ('second')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM items")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (v int)")
    assert User("reader", databases=("ro_db",)) in pg.list_users()


def test_write_access_changes_rows_but_not_the_schema(pg: PostgresEngine) -> None:
    with_table(pg, "rw_db")

    writer = User("writer", "writer-pw-1", databases=("rw_db",), access="write")
    assert pg.create_user(writer) is True

    with login(pg, "writer", "writer-pw-1", "rw_db") as conn:
        conn.autocommit = True
        conn.execute("INSERT INTO items (v) VALUES ('second')")  # the serial's sequence too
        conn.execute("UPDATE items SET v = 'changed' WHERE v = 'first'")
        conn.execute("DELETE FROM items WHERE v = 'second'")
        assert conn.execute("SELECT v FROM items").fetchall() == [("changed",)]
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
        conn.execute("CREATE TEMPORARY TABLE scratch (v int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (v int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE items ADD COLUMN extra int")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE items")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE items")


@pytest.mark.parametrize("access", ["admin", "READ", "all", " read"])
def test_an_unknown_access_is_refused(pg: PostgresEngine, access: str) -> None:
    with pytest.raises(InvalidInput, match="access"):
        pg.create_user(User("oddity", "oddity-pw-1", databases=("shop",), access=access))
    with pytest.raises(InvalidInput, match="access"):
        pg.prepare(PrepareRequest(users=(User("oddity", "oddity-pw-1", access=access),)))

    assert "oddity" not in [u.name for u in pg.list_users()]


def valid_until(engine: PostgresEngine, name: str) -> datetime.datetime | None:
    with psycopg.connect(**engine.process.conninfo()) as conn:
        row = conn.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (name,))
        value = row.fetchone()
    assert value is not None
    return value[0]


def test_valid_until_is_the_roles_expiry(pg: PostgresEngine) -> None:
    pg.create_user(
        User("later", "later-pw-1", databases=("shop",), valid_until="2031-05-01T12:00:00Z")
    )
    pg.create_user(
        User("expired", "expired-pw-1", databases=("shop",), valid_until="2001-01-01T00:00:00Z")
    )
    pg.create_user(User("forever", "forever-pw-1", databases=("shop",)))

    assert valid_until(pg, "later") == datetime.datetime(2031, 5, 1, 12, tzinfo=datetime.UTC)
    assert valid_until(pg, "forever") is None
    with login(pg, "later", "later-pw-1", "shop") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("later",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg, "expired", "expired-pw-1", "shop")


@pytest.mark.parametrize(
    "moment", ["tomorrow", "2031-13-01T00:00:00Z", "2031-05-01T12:00:00Z'; DROP ROLE alice; --"]
)
def test_a_bad_valid_until_is_refused(pg: PostgresEngine, moment: str) -> None:
    with pytest.raises(InvalidInput, match="valid_until"):
        pg.create_user(User("badtime", "badtime-pw-1", databases=("shop",), valid_until=moment))

    assert "badtime" not in [u.name for u in pg.list_users()]
    assert "alice" in [u.name for u in pg.list_users()]


def test_count_sessions_counts_the_users_open_connections(pg: PostgresEngine) -> None:
    pg.create_user(User("counted", "counted-pw-1", databases=("shop",)))
    assert pg.count_sessions(CountSessionsRequest("counted")) == 0

    first = login(pg, "counted", "counted-pw-1", "shop")
    second = login(pg, "counted", "counted-pw-1", "shop")
    try:
        assert pg.count_sessions(CountSessionsRequest("counted")) == 2
        assert pg.count_sessions(CountSessionsRequest("nobody")) == 0
    finally:
        first.close()
    deadline = time.monotonic() + 5
    while pg.count_sessions(CountSessionsRequest("counted")) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # a closed connection's backend exits a moment later
    try:
        assert pg.count_sessions(CountSessionsRequest("counted")) == 1
    finally:
        second.close()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected_before_any_sql(pg: PostgresEngine, name: str) -> None:
    before = (pg.list_databases(), pg.list_users())

    with pytest.raises(InvalidInput):
        pg.create_database(Database(name))
    with pytest.raises(InvalidInput):
        pg.create_user(User(name, "some-password"))
    with pytest.raises(InvalidInput):
        pg.create_user(User("erin", "some-password", databases=(name,)))
    with pytest.raises(InvalidInput):
        pg.delete_database(DeleteDatabaseRequest(name))
    with pytest.raises(InvalidInput):
        pg.delete_user(DeleteUserRequest(name))
    with pytest.raises(InvalidInput):
        pg.count_sessions(CountSessionsRequest(name))
    with pytest.raises(InvalidInput):
        pg.prepare(PrepareRequest(databases=(Database(name),)))

    assert (pg.list_databases(), pg.list_users()) == before
    assert pg.status().status is ServiceStatus.HEALTHY


@pytest.mark.parametrize("name", ["template0", "template1"])
def test_reserved_database_names_are_rejected(pg: PostgresEngine, name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        pg.create_database(Database(name))
    with pytest.raises(InvalidInput, match="reserved"):
        pg.delete_database(DeleteDatabaseRequest(name))


@pytest.mark.parametrize("name", ["root", "cellar", "public"])
def test_reserved_user_names_are_rejected(pg: PostgresEngine, name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        pg.create_user(User(name, "some-password"))
    with pytest.raises(InvalidInput, match="reserved"):
        pg.delete_user(DeleteUserRequest(name))
    assert name not in [u.name for u in pg.list_users()]


@pytest.mark.parametrize("password", ["", "tab\tinside", "x" * 129])
def test_bad_passwords_are_rejected_without_echoing_them(pg: PostgresEngine, password: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        pg.create_user(User("frank", password))

    assert password == "" or password not in caught.value.message
    assert "frank" not in [u.name for u in pg.list_users()]


def test_passwords_never_reach_the_logs(
    pg: PostgresEngine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Gr4pe-s3cret-value"
    caplog.set_level(logging.DEBUG)

    pg.create_user(User("grace", secret, databases=("shop",)))
    pg.create_user(User("grace", secret, databases=("shop",)))
    with pytest.raises(psycopg.OperationalError):
        login(pg, "grace", secret + "-wrong", "shop")
    with login(pg, "grace", secret, "shop") as conn:
        conn.execute("SELECT 1")
    pg.delete_user(DeleteUserRequest("grace"))
    refused = 'password authentication failed for user "grace"'
    deadline = time.monotonic() + 5
    while refused not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)  # the server's own log lines arrive through the relay thread

    assert "created user grace" in caplog.text
    assert refused in caplog.text
    assert secret not in caplog.text
    assert ALICE_PASSWORD not in caplog.text
    assert secret not in repr(User("grace", secret))


def test_calls_before_prepare_fail_with_not_prepared(fresh: PostgresEngine) -> None:
    assert fresh.status().status is ServiceStatus.NEW

    with pytest.raises(NotPrepared):
        fresh.list_databases()
    with pytest.raises(NotPrepared):
        fresh.create_user(User("alice", "pw-alice"))
    with pytest.raises(NotPrepared):
        fresh.start()
    fresh.stop()
    assert fresh.status().status is ServiceStatus.NEW


def test_concurrent_and_repeated_prepare_end_healthy_once(fresh: PostgresEngine) -> None:
    results: list[ServiceStatus] = []
    seen: set[ServiceStatus] = set()
    threads = [threading.Thread(target=lambda: results.append(fresh.prepare(SHOP))) for _ in "ab"]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        seen.add(fresh.status().status)
        time.sleep(0.01)
    for thread in threads:
        thread.join()

    assert results == [ServiceStatus.HEALTHY, ServiceStatus.HEALTHY]
    assert ServiceStatus.BUILDING in seen
    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert [d.name for d in fresh.list_databases()] == ["shop"]
    assert fresh.list_users() == [User("alice", databases=("shop",))]
    assert fresh.marker.exists()


def test_restart_after_stop_keeps_the_data(fresh: PostgresEngine) -> None:
    fresh.prepare(SHOP)
    with login(fresh, "alice", ALICE_PASSWORD, "shop") as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
        conn.commit()
    fresh.stop()
    assert fresh.status().status is ServiceStatus.SHUTDOWN

    rebooted = PostgresEngine(fresh.data_dir, fresh.options)
    assert rebooted.status().status is ServiceStatus.SHUTDOWN
    rebooted.start()
    try:
        assert rebooted.status().status is ServiceStatus.HEALTHY
        with login(rebooted, "alice", ALICE_PASSWORD, "shop") as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    finally:
        rebooted.stop()
    assert rebooted.status().status is ServiceStatus.SHUTDOWN


def test_stale_pid_file_does_not_block_a_start(fresh: PostgresEngine) -> None:
    fresh.prepare(SHOP)
    fresh.stop()
    (fresh.pgdata / "postmaster.pid").write_text("999999999\n")

    fresh.start()

    assert fresh.status().status is ServiceStatus.HEALTHY


def test_unexpected_exit_is_reported_and_prepare_recovers(fresh: PostgresEngine) -> None:
    fresh.prepare(SHOP)
    child = fresh.process._child
    assert child is not None
    child.terminate()
    child.wait(timeout=10)

    report = fresh.status()
    assert report.status is ServiceStatus.FAILED
    assert "postgres exited with code" in report.detail

    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert fresh.status().status is ServiceStatus.HEALTHY


def test_leftovers_of_an_interrupted_initdb_are_replaced(fresh: PostgresEngine) -> None:
    fresh.pgdata.mkdir(parents=True)
    (fresh.pgdata / "half-written").write_text("junk")

    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert not (fresh.pgdata / "half-written").exists()


def test_failed_prepare_is_reported_with_its_reason(fresh: PostgresEngine) -> None:
    broken = PostgresEngine(
        fresh.data_dir,
        type(fresh.options)(
            port=fresh.options.port,
            socket_dir=fresh.options.socket_dir,
            bin_dir=fresh.data_dir / "no-such-bin",
            os_user=fresh.options.os_user,
        ),
    )

    with pytest.raises(EngineError, match="initdb"):
        broken.prepare(SHOP)

    report = broken.status()
    assert report.status is ServiceStatus.FAILED
    assert "initdb" in report.detail
    assert "No such file or directory" in report.detail
    assert not broken.marker.exists()


def test_warm_up_runs_initdb_once_before_prepare(
    fresh: PostgresEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guestagent")
    fresh.warm_up()
    assert fresh.process.initdb_pending()
    fresh.warm_up()  # a second call while initdb runs starts nothing new
    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert not fresh.process.initdb_pending()
    initdb_runs = [r for r in caplog.records if r.getMessage().startswith("initdb done")]
    assert len(initdb_runs) == 1
    with login(fresh, "alice", ALICE_PASSWORD, "shop") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)
    fresh.warm_up()  # once prepared, warming up does nothing
    assert not fresh.process.initdb_pending()


def test_configuration_applies_live_or_waits_for_a_restart(fresh: PostgresEngine) -> None:
    request = PrepareRequest(
        databases=SHOP.databases,
        users=SHOP.users,
        memory_mb=256,
        configuration=(("work_mem", "8192"),),
    )
    assert fresh.prepare(request) is ServiceStatus.HEALTHY
    with login(fresh, "alice", ALICE_PASSWORD, "shop") as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    assert fresh.apply_configuration({"work_mem": "16384"}) is False
    with login(fresh, "alice", ALICE_PASSWORD, "shop") as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("16MB",)
    running = fresh.get_configuration(["work_mem", "max_connections", "no_such_thing"])
    assert running == {"work_mem": "16384", "max_connections": "100"}
    assert fresh.apply_configuration({"max_connections": "150"}) is True
    fresh.restart()
    with login(fresh, "alice", ALICE_PASSWORD, "shop") as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("150",)
        assert conn.execute("SHOW work_mem").fetchone() == ("4MB",)
    assert fresh.apply_configuration({"max_connections": "150"}) is False
    with pytest.raises(InvalidInput, match="10 to 5000"):
        fresh.apply_configuration({"max_connections": "5"})
    with pytest.raises(InvalidInput, match="not a parameter"):
        fresh.apply_configuration({"shared_buffers": "1GB"})


def test_metrics_count_sessions_transactions_and_cache_hits(
    pg: PostgresEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg, "cgroup_dir", tmp_path)
    (tmp_path / "memory.current").write_text("123456789\n")
    before = pg.metrics()
    with login(pg, "alice", ALICE_PASSWORD, "shop") as conn:
        while_open = pg.metrics()
        for _ in range(5):
            conn.execute("SELECT count(*) FROM pg_class")
            conn.commit()
    wanted = before["transactions_total"] + 5  # a session's counts land when it ends
    deadline = time.monotonic() + 5
    after = pg.metrics()
    while after["transactions_total"] < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        after = pg.metrics()

    assert before.keys() == {
        "connections",
        "transactions_total",
        "cache_hit_ratio",
        "uptime_seconds",
        "memory_bytes",
        "volume_used_bytes",
    }, "a primary has no lag, and PostgreSQL counts no commands"
    assert before["connections"] >= 1  # the agent's own session
    assert while_open["connections"] >= before["connections"] + 1
    assert after["transactions_total"] >= wanted
    assert 0.5 < after["cache_hit_ratio"] <= 1.0
    assert 0 < before["uptime_seconds"] <= after["uptime_seconds"] < 3600
    assert before["memory_bytes"] == 123456789.0
    assert before["volume_used_bytes"] > 0


@pytest.mark.parametrize(
    ("age", "caught_up", "streaming", "lag"),
    [
        (12.5, False, True, 12.5),  # WAL received but not replayed yet
        (30.0, None, False, 30.0),  # the stream is down: the last replay's age
        (12.5, True, True, 0.0),  # all it received is replayed: an idle primary
        (None, None, True, 0.0),  # streaming, nothing to replay yet
        (None, None, False, None),  # nothing replayed, no stream: it cannot say
        (-0.2, False, True, 0.0),  # the primary's clock a little ahead
    ],
)
def test_replay_lag_of_a_standby(
    age: float | None, caught_up: bool | None, streaming: bool | None, lag: float | None
) -> None:
    assert replay_lag(age, caught_up, streaming) == lag
