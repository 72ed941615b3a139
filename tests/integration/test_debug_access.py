"""Debug credentials on real engines: a read login reads and cannot write, a write login
changes rows but not the schema, a revoked login's open session is ended, and the sweep
drops a login whose time is up."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pymysql
import pytest

from tests.integration.engines import LOGIN_ERRORS, can_login, query, session
from tests.integration.stack import Api
from tests.integration.test_backups import PASSWORD, create, drop

SQL_ENGINES = ("postgresql", "mariadb")
SQL_ERRORS = (psycopg.Error, pymysql.err.Error)


def issue(api: Api, instance_id: str, **fields: Any) -> dict[str, Any]:
    body = {"reason": "INC-9: a wrong total", "databases": ["shop"], **fields}
    reply = api.call("POST", f"/instances/{instance_id}/credentials", json={"credential": body})
    assert reply.status_code == 201, reply.text
    shown = reply.json()["credential"]
    assert shown["state"] == "ACTIVE", shown
    return dict(shown)


def refused(conn: Any, statement: str) -> bool:
    try:
        query(conn, statement)
    except psycopg.Error as exc:  # insufficient privilege, or a read-only transaction
        return exc.sqlstate in ("42501", "25006")
    except pymysql.err.Error as exc:  # command or database access denied
        return exc.args[0] in (1142, 1044)
    return False


def state_of(api: Api, instance_id: str, credential_id: str) -> str:
    reply = api.call("GET", f"/instances/{instance_id}/credentials/{credential_id}")
    return str(reply.json()["credential"]["state"])


@pytest.mark.integration
def test_debug_logins_on_sql_engines(api: Api) -> None:
    made = {datastore: create(api, datastore) for datastore in SQL_ENGINES}
    for datastore, view in made.items():
        assert view["status"] == "ACTIVE", (datastore, view.get("fault"))
        with session(datastore, view["connection"], "app", PASSWORD, "shop") as conn:
            query(conn, "CREATE TABLE orders (id INT PRIMARY KEY, total INT)")
            query(conn, "INSERT INTO orders VALUES (1, 10)")
    pg = made["postgresql"]
    short = issue(api, pg["id"], ttl_seconds=60)  # ends while the rest runs
    lingering = session("postgresql", pg["connection"], short["user"], short["password"], "shop")
    held = lingering.__enter__()
    assert query(held, "SELECT total FROM orders") == [(10,)]

    for datastore, view in made.items():
        where = view["connection"]
        reader = issue(api, view["id"])
        with session(datastore, where, reader["user"], reader["password"], "shop") as conn:
            assert [tuple(r) for r in query(conn, "SELECT total FROM orders")] == [(10,)]
            assert refused(conn, "INSERT INTO orders VALUES (2, 20)"), datastore
        writer = issue(api, view["id"], access="write")
        with session(datastore, where, writer["user"], writer["password"], "shop") as conn:
            query(conn, "UPDATE orders SET total = 11 WHERE id = 1")
            assert refused(conn, "DROP TABLE orders"), datastore
            assert refused(conn, "CREATE TABLE more (id INT)"), datastore
            query(conn, "SELECT 1")
            open_session = conn
            path = f"/instances/{view['id']}/credentials/{writer['id']}"
            reply = api.call("DELETE", path)
            assert reply.status_code == 200, reply.text
            assert reply.json()["credential"]["state"] == "REVOKED"
            with pytest.raises(SQL_ERRORS):  # the engine closed the session
                query(open_session, "SELECT 1")
        assert not can_login(datastore, where, writer["user"], writer["password"])
        with session(datastore, where, "app", PASSWORD, "shop") as conn:
            assert [tuple(r) for r in query(conn, "SELECT total FROM orders")] == [(11,)]
        listed = api.call("GET", f"/instances/{view['id']}/credentials").json()["credentials"]
        assert [c["state"] for c in listed][:2] == ["REVOKED", "ACTIVE"], listed

    end = time.monotonic() + 120
    while time.monotonic() < end and state_of(api, pg["id"], short["id"]) != "EXPIRED":
        time.sleep(2)
    assert state_of(api, pg["id"], short["id"]) == "EXPIRED"
    with pytest.raises(SQL_ERRORS):  # the sweep ended the open session too
        query(held, "SELECT 1")
    lingering.__exit__(None, None, None)
    assert not can_login("postgresql", pg["connection"], short["user"], short["password"])
    audit = api.call("GET", "/audit?action=credential.expired").json()
    assert any(e["details"]["credential_id"] == short["id"] for e in audit["events"]), audit
    drop(api, *(view["id"] for view in made.values()))


@pytest.mark.integration
def test_redis_read_login_reads_only(api: Api) -> None:
    view = create(api, "redis")
    assert view["status"] == "ACTIVE", view.get("fault")
    with session("redis", view["connection"], "app", PASSWORD) as conn:
        conn.set("order:1", "10")
    reader = issue(api, view["id"], databases=None)
    with session("redis", view["connection"], reader["user"], reader["password"]) as conn:
        assert conn.get("order:1") == b"10"
        with pytest.raises(LOGIN_ERRORS):
            conn.set("order:1", "11")
    reply = api.call("DELETE", f"/instances/{view['id']}/credentials/{reader['id']}")
    assert reply.status_code == 200, reply.text
    assert not can_login("redis", view["connection"], reader["user"], reader["password"])
    drop(api, view["id"])
