"""MariadbEngine against a real MariaDB 10.11 server in a temporary data directory."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.mariadb import MariadbEngine
from guestagent.engines.mariadb_admin import status_metrics
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
from guestagent.errors import EngineError, NotPrepared
from tests.unit.guestagent.support import mariadb_engine

ALICE_PASSWORD = "alice-Pw-9f2e'; DROP USER x; --"
SHOP = PrepareRequest(
    databases=(Database("shop"), Database("shop_db")),
    users=(User("alice", ALICE_PASSWORD, databases=("shop",)),),
    memory_mb=256,
    configuration=(("max_connections", "120"),),
)
BAD_NAMES = ["bad`name", "x'y", "x;drop", "a b", "1abc", "", "x" * 64]
MB = 1024 * 1024
DENIED = (1045, 1698)  # wrong password; no such account


@pytest.fixture(scope="module")
def mdb() -> Iterator[MariadbEngine]:
    with mariadb_engine() as engine:
        engine.warm_up()
        assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
        yield engine


@pytest.fixture
def fresh() -> Iterator[MariadbEngine]:
    with mariadb_engine() as engine:
        yield engine


def login(
    engine: MariadbEngine, user: str, password: str, database: str | None = None
) -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user=user,
        password=password,
        database=database,
        connect_timeout=5,
        autocommit=True,
    )


def query(conn: pymysql.connections.Connection, statement: str) -> list[tuple[object, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall())


def visible_databases(engine: MariadbEngine, user: str, password: str) -> set[str]:
    conn = login(engine, user, password)
    try:
        return {str(row[0]) for row in query(conn, "SHOW DATABASES")}
    finally:
        conn.close()


def refused(engine: MariadbEngine, user: str, password: str, database: str | None = None) -> int:
    """The error code a login gets (the test fails if it gets in)."""
    with pytest.raises(pymysql.OperationalError) as caught:
        login(engine, user, password, database).close()
    return int(caught.value.args[0])


def denied(engine: MariadbEngine, user: str, password: str) -> bool:
    return refused(engine, user, password) in DENIED


def test_prepare_creates_the_databases_and_users(mdb: MariadbEngine) -> None:
    assert mdb.status().status is ServiceStatus.HEALTHY
    assert {"shop", "shop_db"} <= {d.name for d in mdb.list_databases()}
    assert User("alice", host="%", databases=("shop",)) in mdb.list_users()
    assert (mdb.datadir / "mysql").is_dir()
    assert mdb.marker.exists()


def test_listings_leave_out_the_engines_own_databases_and_accounts(mdb: MariadbEngine) -> None:
    databases = {d.name for d in mdb.list_databases()}
    users = {u.name for u in mdb.list_users()}

    assert databases.isdisjoint({"mysql", "information_schema", "performance_schema", "sys"})
    assert users.isdisjoint({"root", "mysql", "mariadb.sys"})
    assert all(u.password == "" for u in mdb.list_users())


def test_user_logs_in_over_tcp_and_sees_only_its_databases(mdb: MariadbEngine) -> None:
    conn = login(mdb, "alice", ALICE_PASSWORD, "shop")
    try:
        query(conn, "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, item TEXT)")
        query(conn, "INSERT INTO orders (item) VALUES ('apples'), ('pears')")
        rows = query(conn, "SELECT item FROM orders ORDER BY id")
    finally:
        conn.close()

    assert rows == [("apples",), ("pears",)]
    # shop_db would match a grant on "shop_db"-like patterns only: alice has "shop" alone.
    assert visible_databases(mdb, "alice", ALICE_PASSWORD) == {"information_schema", "shop"}
    assert refused(mdb, "alice", ALICE_PASSWORD, "shop_db") == 1044  # access denied to db
    assert denied(mdb, "alice", "not-the-password")


def test_grant_on_a_name_with_an_underscore_is_not_a_wildcard(mdb: MariadbEngine) -> None:
    mdb.create_database(Database("shopxdb"))
    mdb.create_user(User("ursula", "ursula-pw", databases=("shop_db",)))

    assert visible_databases(mdb, "ursula", "ursula-pw") == {"information_schema", "shop_db"}
    assert User("ursula", host="%", databases=("shop_db",)) in mdb.list_users()


def test_create_list_and_delete_a_database_idempotently(mdb: MariadbEngine) -> None:
    assert mdb.create_database(Database("reports")) is True
    assert mdb.create_database(Database("reports")) is False
    assert "reports" in [d.name for d in mdb.list_databases()]

    assert mdb.delete_database(DeleteDatabaseRequest("reports")) is True
    assert mdb.delete_database(DeleteDatabaseRequest("reports")) is False
    assert "reports" not in [d.name for d in mdb.list_databases()]


def test_database_with_character_set_and_collation(mdb: MariadbEngine) -> None:
    assert mdb.create_database(Database("legacy", "latin1", "latin1_swedish_ci")) is True

    assert Database("legacy", "latin1", "latin1_swedish_ci") in mdb.list_databases()
    with pytest.raises(InvalidInput, match="Unknown character set"):
        mdb.create_database(Database("broken", character_set="no_such_charset"))
    with pytest.raises(InvalidInput, match="not allowed"):
        mdb.create_database(Database("broken", collate="C'; DROP"))
    assert "broken" not in [d.name for d in mdb.list_databases()]


def test_database_in_use_is_dropped_and_its_grants_go_with_it(mdb: MariadbEngine) -> None:
    mdb.create_database(Database("busy"))
    mdb.create_user(User("busy_user", "busy-pw-1", databases=("busy",)))
    conn = login(mdb, "busy_user", "busy-pw-1", "busy")
    try:
        query(conn, "CREATE TABLE t (v INT)")
        query(conn, "START TRANSACTION")
        query(conn, "INSERT INTO t VALUES (1)")
        assert mdb.delete_database(DeleteDatabaseRequest("busy")) is True
    finally:
        conn.close()

    assert "busy" not in [d.name for d in mdb.list_databases()]
    assert User("busy_user", host="%", databases=()) in mdb.list_users()
    mdb.create_database(Database("busy"))
    assert visible_databases(mdb, "busy_user", "busy-pw-1") == {"information_schema"}


def test_create_list_and_delete_a_user_at_a_host(mdb: MariadbEngine) -> None:
    bob = User("bob", "b0b-pass", host="127.0.0.1", databases=("shop",))

    assert mdb.create_user(bob) is True
    assert mdb.create_user(bob) is False
    assert User("bob", host="127.0.0.1", databases=("shop",)) in mdb.list_users()
    assert visible_databases(mdb, "bob", "b0b-pass") == {"information_schema", "shop"}

    assert mdb.delete_user(DeleteUserRequest("bob")) is False  # bob@% does not exist
    assert mdb.delete_user(DeleteUserRequest("bob", host="127.0.0.1")) is True
    assert mdb.delete_user(DeleteUserRequest("bob", host="127.0.0.1")) is False
    assert "bob" not in [u.name for u in mdb.list_users()]
    assert denied(mdb, "bob", "b0b-pass")


def with_table(engine: MariadbEngine, database: str) -> None:
    """Create ``database`` with a table ``items`` (one row) and a view of it."""
    engine.create_database(Database(database))
    with engine.admin.connect() as cursor:
        cursor.execute(
            f"CREATE TABLE `{database}`.items (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)"
        )
        cursor.execute(f"INSERT INTO `{database}`.items (v) VALUES ('first')")
        cursor.execute(f"CREATE VIEW `{database}`.item_names AS SELECT v FROM `{database}`.items")


def denied_statement(conn: pymysql.connections.Connection, statement: str) -> int:
    """The error code ``statement`` gets (the test fails if it runs)."""
    with pytest.raises(pymysql.MySQLError) as caught:
        query(conn, statement)
    return int(caught.value.args[0])


COMMAND_DENIED = (1142, 1044)  # on a table; on the database


def test_read_access_can_select_but_not_change_anything(mdb: MariadbEngine) -> None:
    with_table(mdb, "ro_db")

    reader = User("reader", "reader-pw-1", databases=("ro_db",), access="read")
    assert mdb.create_user(reader) is True

    conn = login(mdb, "reader", "reader-pw-1", "ro_db")
    try:
        assert query(conn, "SELECT v FROM items") == [("first",)]
        assert query(conn, "SELECT v FROM item_names") == [("first",)]
        assert "item_names" in str(query(conn, "SHOW CREATE VIEW item_names"))
        grants = " ".join(str(row[0]) for row in query(conn, "SHOW GRANTS"))
        for statement in (
            "INSERT INTO items (v) VALUES ('second')",
            "UPDATE items SET v = 'changed'",
            "DELETE FROM items",
            "CREATE TABLE mine (v INT)",
            "DROP TABLE items",
        ):
            assert denied_statement(conn, statement) in COMMAND_DENIED, statement
    finally:
        conn.close()
    assert "GRANT SELECT, SHOW VIEW ON `ro\\_db`.*" in grants


def test_write_access_changes_rows_but_not_the_schema(mdb: MariadbEngine) -> None:
    with_table(mdb, "rw_db")

    writer = User("writer", "writer-pw-1", databases=("rw_db",), access="write")
    assert mdb.create_user(writer) is True

    conn = login(mdb, "writer", "writer-pw-1", "rw_db")
    try:
        query(conn, "INSERT INTO items (v) VALUES ('second')")
        query(conn, "UPDATE items SET v = 'changed' WHERE v = 'first'")
        query(conn, "DELETE FROM items WHERE v = 'second'")
        assert query(conn, "SELECT v FROM items") == [("changed",)]
        for statement in (
            "CREATE TABLE mine (v INT)",
            "ALTER TABLE items ADD COLUMN extra INT",
            "DROP TABLE items",
            "TRUNCATE items",
        ):
            assert denied_statement(conn, statement) in COMMAND_DENIED, statement
    finally:
        conn.close()


@pytest.mark.parametrize("access", ["admin", "READ", "all", " read"])
def test_an_unknown_access_is_refused(mdb: MariadbEngine, access: str) -> None:
    with pytest.raises(InvalidInput, match="access"):
        mdb.create_user(User("oddity", "oddity-pw-1", databases=("shop",), access=access))
    with pytest.raises(InvalidInput, match="access"):
        mdb.prepare(PrepareRequest(users=(User("oddity", "oddity-pw-1", access=access),)))

    assert "oddity" not in [u.name for u in mdb.list_users()]


def test_a_deleted_user_loses_its_open_sessions(mdb: MariadbEngine) -> None:
    mdb.create_user(User("leaver", "leaver-pw-1", databases=("shop",)))
    mdb.create_user(User("pinned", "pinned-pw-1", host="127.0.0.1", databases=("shop",)))
    leaving = [login(mdb, "leaver", "leaver-pw-1", "shop") for _ in range(2)]
    pinned = login(mdb, "pinned", "pinned-pw-1", "shop")
    staying = login(mdb, "alice", ALICE_PASSWORD, "shop")
    try:
        assert mdb.delete_user(DeleteUserRequest("leaver")) is True
        assert mdb.delete_user(DeleteUserRequest("pinned", host="127.0.0.1")) is True

        for conn in (*leaving, pinned):
            with pytest.raises(pymysql.OperationalError):
                query(conn, "SELECT 1")
        assert query(staying, "SELECT 1") == [(1,)]
        assert mdb.count_sessions(CountSessionsRequest("leaver")) == 0
    finally:
        for conn in (*leaving, pinned, staying):
            conn.close()


def test_count_sessions_counts_the_accounts_open_connections(mdb: MariadbEngine) -> None:
    mdb.create_user(User("counted", "counted-pw-1", databases=("shop",)))
    assert mdb.count_sessions(CountSessionsRequest("counted")) == 0

    conns = [login(mdb, "counted", "counted-pw-1", "shop") for _ in range(2)]
    try:
        assert mdb.count_sessions(CountSessionsRequest("counted")) == 2
        assert mdb.count_sessions(CountSessionsRequest("counted", host="127.0.0.1")) == 2
        assert mdb.count_sessions(CountSessionsRequest("counted", host="10.0.0.%")) == 0
        assert mdb.count_sessions(CountSessionsRequest("nobody")) == 0
    finally:
        for conn in conns:
            conn.close()


def test_user_for_a_missing_database_is_refused(mdb: MariadbEngine) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        mdb.create_user(User("dave", "dave-pw", databases=("nowhere",)))

    assert "dave" not in [u.name for u in mdb.list_users()]


def test_change_password(mdb: MariadbEngine) -> None:
    mdb.create_user(User("carol", "carol-old", databases=("shop",)))

    assert mdb.change_password(User("carol", "carol-new")) is True
    assert denied(mdb, "carol", "carol-old")
    login(mdb, "carol", "carol-new", "shop").close()
    assert mdb.change_password(User("nobody", "whatever")) is False
    assert mdb.change_password(User("carol", "carol-x", host="10.0.0.1")) is False


def test_grant_and_revoke_access(mdb: MariadbEngine) -> None:
    mdb.create_database(Database("crm"))
    mdb.create_user(User("erin", "erin-pw"))
    assert visible_databases(mdb, "erin", "erin-pw") == {"information_schema"}

    mdb.grant_access(GrantAccessRequest("erin", databases=("crm", "shop")))
    assert visible_databases(mdb, "erin", "erin-pw") == {"information_schema", "crm", "shop"}
    assert User("erin", host="%", databases=("crm", "shop")) in mdb.list_users()

    assert mdb.revoke_access(RevokeAccessRequest("erin", "crm")) is True
    assert mdb.revoke_access(RevokeAccessRequest("erin", "crm")) is False
    assert visible_databases(mdb, "erin", "erin-pw") == {"information_schema", "shop"}
    with pytest.raises(InvalidInput, match="does not exist"):
        mdb.grant_access(GrantAccessRequest("erin", databases=("nowhere",)))
    with pytest.raises(InvalidInput, match="does not exist"):
        mdb.grant_access(GrantAccessRequest("nobody", databases=("crm",)))


def test_enable_root_lets_root_in_over_tcp_with_every_privilege(mdb: MariadbEngine) -> None:
    assert denied(mdb, "root", "r00t-secret")

    assert mdb.enable_root("r00t-secret") == "root"
    conn = login(mdb, "root", "r00t-secret")
    try:
        assert "mysql" in {str(row[0]) for row in query(conn, "SHOW DATABASES")}
        grants = " ".join(str(row[0]) for row in query(conn, "SHOW GRANTS"))
        query(conn, "CREATE DATABASE root_made")
    finally:
        conn.close()
    assert "ALL PRIVILEGES ON *.*" in grants
    assert "WITH GRANT OPTION" in grants
    assert "root" not in [u.name for u in mdb.list_users()]

    assert mdb.enable_root("r00t-other") == "root"  # a second call changes the password
    assert denied(mdb, "root", "r00t-secret")
    login(mdb, "root", "r00t-other").close()

    assert mdb.disable_root() is True
    assert denied(mdb, "root", "r00t-other")
    assert mdb.disable_root() is False
    assert mdb.list_databases()  # the agent's own login still works


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected_before_any_sql(mdb: MariadbEngine, name: str) -> None:
    before = (mdb.list_databases(), mdb.list_users())

    with pytest.raises(InvalidInput):
        mdb.create_database(Database(name))
    with pytest.raises(InvalidInput):
        mdb.create_user(User(name, "some-password"))
    with pytest.raises(InvalidInput):
        mdb.create_user(User("frank", "some-password", databases=(name,)))
    with pytest.raises(InvalidInput):
        mdb.delete_database(DeleteDatabaseRequest(name))
    with pytest.raises(InvalidInput):
        mdb.delete_user(DeleteUserRequest(name))
    with pytest.raises(InvalidInput):
        mdb.count_sessions(CountSessionsRequest(name))
    with pytest.raises(InvalidInput):
        mdb.grant_access(GrantAccessRequest("alice", databases=(name,)))
    with pytest.raises(InvalidInput):
        mdb.prepare(PrepareRequest(databases=(Database(name),)))

    assert (mdb.list_databases(), mdb.list_users()) == before
    assert mdb.status().status is ServiceStatus.HEALTHY


@pytest.mark.parametrize("host", ["x'y", "a b", "h;drop", "x@y", "h`"])
def test_bad_hosts_are_rejected(mdb: MariadbEngine, host: str) -> None:
    with pytest.raises(InvalidInput, match="host"):
        mdb.create_user(User("frank", "some-password", host=host))
    with pytest.raises(InvalidInput, match="host"):
        mdb.delete_user(DeleteUserRequest("alice", host=host))
    with pytest.raises(InvalidInput, match="host"):
        mdb.count_sessions(CountSessionsRequest("alice", host=host))
    assert "frank" not in [u.name for u in mdb.list_users()]


@pytest.mark.parametrize("name", ["mysql", "information_schema", "performance_schema", "sys"])
def test_reserved_database_names_are_rejected(mdb: MariadbEngine, name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        mdb.create_database(Database(name))
    with pytest.raises(InvalidInput, match="reserved"):
        mdb.delete_database(DeleteDatabaseRequest(name))


@pytest.mark.parametrize("name", ["root", "mysql", "cellar", "mariadb_sys"])
def test_reserved_user_names_are_rejected(mdb: MariadbEngine, name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        mdb.create_user(User(name, "some-password"))
    with pytest.raises(InvalidInput, match="reserved"):
        mdb.delete_user(DeleteUserRequest(name, host="localhost"))
    with pytest.raises(InvalidInput, match="reserved"):
        mdb.change_password(User(name, "some-password", host="localhost"))


def test_passwords_never_reach_the_logs(
    mdb: MariadbEngine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Gr4pe-s3cret-value"
    caplog.set_level(logging.DEBUG)

    mdb.create_user(User("grace", secret, databases=("shop",)))
    mdb.change_password(User("grace", secret + "2"))
    refused(mdb, "grace", secret)
    login(mdb, "grace", secret + "2", "shop").close()
    mdb.delete_user(DeleteUserRequest("grace"))
    mdb.enable_root(secret + "-root")
    denied = "Access denied for user 'grace'"
    deadline = time.monotonic() + 5
    while denied not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)  # the server's own lines arrive through the relay thread

    assert "created user grace@%" in caplog.text
    assert denied in caplog.text
    log_file = "\n".join(mdb.logs()["mariadb"].tail(10_000))
    for text in (caplog.text, log_file):
        assert secret not in text
        assert ALICE_PASSWORD not in text
    assert mdb.admin.variable("general_log") == "0"
    for path in mdb.data_dir.rglob("*"):  # no query log, table or redo log holds it
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_resize_changes_the_buffer_pool_live(mdb: MariadbEngine) -> None:
    conn = login(mdb, "alice", ALICE_PASSWORD, "shop")
    try:
        assert mdb.resize(1024) is False
        assert query(conn, "SELECT @@innodb_buffer_pool_size") == [(512 * MB,)]  # same session
    finally:
        conn.close()
    assert "innodb_buffer_pool_size = 512M" in (mdb.data_dir / "cellar.cnf").read_text()
    assert mdb.resize(256) is False
    assert mdb.admin.variable("innodb_buffer_pool_size") == str(128 * MB)


def test_configuration_applies_live_or_waits_for_a_restart(mdb: MariadbEngine) -> None:
    assert mdb.admin.variable("max_connections") == "120"  # from prepare

    assert mdb.apply_configuration({"max_connections": "321", "slow_query_log": "false"}) is False
    conn = login(mdb, "alice", ALICE_PASSWORD)
    try:
        assert query(conn, "SELECT @@max_connections") == [(321,)]
    finally:
        conn.close()
    running = mdb.get_configuration(["max_connections", "slow_query_log", "no_such_thing"])
    assert running == {"max_connections": "321", "slow_query_log": "OFF"}
    assert mdb.apply_configuration({"performance_schema": "true"}) is True
    assert mdb.admin.variable("max_connections") == "151"  # dropped: back to the default
    assert "performance_schema = on" in (mdb.data_dir / "cellar-user.cnf").read_text()
    assert mdb.apply_configuration({"performance_schema": "false"}) is False  # as running
    with pytest.raises(InvalidInput, match="10 to 5000"):
        mdb.apply_configuration({"max_connections": "5"})
    with pytest.raises(InvalidInput, match="not a parameter"):
        mdb.apply_configuration({"innodb_buffer_pool_size": "1G"})


def test_logs_hold_the_servers_lines(mdb: MariadbEngine) -> None:
    logs = mdb.logs()

    assert list(logs) == ["mariadb"]
    assert logs["mariadb"].path == mdb.data_dir / "log" / "mariadb.log"
    assert any("ready for connections" in line for line in logs["mariadb"].tail(200))


def test_calls_before_prepare_fail_with_not_prepared(fresh: MariadbEngine) -> None:
    assert fresh.status().status is ServiceStatus.NEW

    with pytest.raises(NotPrepared):
        fresh.list_databases()
    with pytest.raises(NotPrepared):
        fresh.create_user(User("alice", "pw-alice"))
    with pytest.raises(NotPrepared):
        fresh.enable_root("pw-root")
    with pytest.raises(NotPrepared):
        fresh.start()
    fresh.stop()
    assert fresh.status().status is ServiceStatus.NEW


def test_stop_and_start_keep_the_data(fresh: MariadbEngine) -> None:
    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY  # again: nothing new
    conn = login(fresh, "alice", ALICE_PASSWORD, "shop")
    try:
        query(conn, "CREATE TABLE kept (v TEXT)")
        query(conn, "INSERT INTO kept VALUES ('still here')")
    finally:
        conn.close()
    fresh.stop()
    assert fresh.status().status is ServiceStatus.SHUTDOWN

    rebooted = MariadbEngine(fresh.data_dir, fresh.options)
    assert rebooted.status().status is ServiceStatus.SHUTDOWN
    rebooted.start()
    try:
        assert rebooted.status().status is ServiceStatus.HEALTHY
        conn = login(rebooted, "alice", ALICE_PASSWORD, "shop")
        try:
            assert query(conn, "SELECT v FROM kept") == [("still here",)]
            assert query(conn, "SELECT @@max_connections") == [(120,)]
            assert query(conn, "SELECT @@innodb_buffer_pool_size") == [(128 * MB,)]
        finally:
            conn.close()
        assert rebooted.restart() is ServiceStatus.HEALTHY
    finally:
        rebooted.stop()
    assert rebooted.status().status is ServiceStatus.SHUTDOWN


def test_unexpected_exit_is_reported_and_prepare_recovers(fresh: MariadbEngine) -> None:
    fresh.prepare(SHOP)
    child = fresh.process._child
    assert child is not None
    child.kill()
    child.wait(timeout=10)

    report = fresh.status()
    assert report.status is ServiceStatus.FAILED
    assert "mariadbd exited with code" in report.detail

    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert fresh.status().status is ServiceStatus.HEALTHY


def test_leftovers_of_an_interrupted_install_are_replaced(fresh: MariadbEngine) -> None:
    fresh.datadir.mkdir(parents=True)
    (fresh.datadir / "half-written").write_text("junk")

    assert fresh.prepare(SHOP) is ServiceStatus.HEALTHY
    assert not (fresh.datadir / "half-written").exists()


def test_failed_prepare_is_reported_with_its_reason(fresh: MariadbEngine) -> None:
    broken = MariadbEngine(
        fresh.data_dir,
        type(fresh.options)(
            port=fresh.options.port,
            socket=fresh.options.socket,
            basedir=fresh.data_dir / "no-such-dir",
            os_user=fresh.options.os_user,
        ),
    )

    with pytest.raises(EngineError, match="mariadb-install-db"):
        broken.prepare(SHOP)

    report = broken.status()
    assert report.status is ServiceStatus.FAILED
    assert "No such file or directory" in report.detail
    assert not broken.marker.exists()


def test_metrics_count_sessions_statements_and_transactions(
    mdb: MariadbEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mdb, "cgroup_dir", tmp_path)  # no cgroup file: no memory_bytes
    before = mdb.metrics()
    conn = login(mdb, "alice", ALICE_PASSWORD, "shop")
    try:
        while_open = mdb.metrics()
        for statement in ("BEGIN", "COMMIT", "START TRANSACTION", "ROLLBACK"):
            query(conn, statement)
    finally:
        conn.close()
    after = mdb.metrics()

    assert before.keys() == {
        "connections",
        "transactions_total",
        "commands_total",
        "cache_hit_ratio",
        "uptime_seconds",
        "volume_used_bytes",
    }, "a primary has no lag"
    assert before["connections"] >= 1  # the agent's own session
    assert while_open["connections"] >= before["connections"] + 1
    assert after["transactions_total"] == before["transactions_total"] + 2
    assert after["commands_total"] >= before["commands_total"] + 4
    assert 0.0 < after["cache_hit_ratio"] <= 1.0
    assert 0 <= before["uptime_seconds"] <= after["uptime_seconds"] < 3600


def test_status_metrics_from_given_counters() -> None:
    status = {
        "Threads_connected": "7",
        "Questions": "1000",
        "Uptime": "3600",
        "Com_commit": "40",
        "Com_rollback": "2",
        "Innodb_buffer_pool_reads": "25",
        "Innodb_buffer_pool_read_requests": "1000",
    }
    primary = {
        "connections": 7.0,
        "commands_total": 1000.0,
        "uptime_seconds": 3600.0,
        "transactions_total": 42.0,
        "cache_hit_ratio": 0.975,
    }

    assert status_metrics(status, None) == primary
    link = {"Master_Host": "10.0.0.5", "Seconds_Behind_Master": 3}
    assert status_metrics(status, link) == {**primary, "replication_lag_seconds": 3.0}
    stopped = {"Master_Host": "10.0.0.5", "Seconds_Behind_Master": None}
    assert status_metrics(status, stopped) == primary
    fresh = {**status, "Innodb_buffer_pool_reads": "0", "Innodb_buffer_pool_read_requests": "0"}
    assert status_metrics(fresh, None)["cache_hit_ratio"] == 1.0
