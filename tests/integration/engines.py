"""Real clients of the three engines, so one test can speak to any of them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import redis

LOGIN_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, redis.RedisError)
# Cellar's CA certificate, to check the engines' certificates (Redis speaks TLS alone);
# the stack fixture sets it once Cellar has made its CA.
CA_FILE: Path | None = None


def redis_client(host: str, port: int, **kwargs: Any) -> redis.Redis:
    """A client of a Redis instance's TLS port that checks the server's certificate."""
    checked = CA_FILE is not None
    return redis.Redis(
        host=host,
        port=port,
        ssl=True,
        ssl_ca_certs=str(CA_FILE) if checked else None,
        ssl_check_hostname=checked,
        ssl_cert_reqs="required" if checked else "none",
        **kwargs,
    )


@contextlib.contextmanager
def session(
    datastore: str, where: dict[str, Any], user: str, password: str, database: str = ""
) -> Iterator[Any]:
    """A connection as ``user``; raises one of ``LOGIN_ERRORS`` when the login is refused."""
    host, port = where["host"], where["port"]
    if datastore == "postgresql":
        with psycopg.connect(
            host=host, port=port, user=user, password=password,
            dbname=database or "postgres", connect_timeout=10, autocommit=True,
        ) as conn:  # fmt: skip
            yield conn
    elif datastore == "mariadb":
        conn = pymysql.connect(
            host=host, port=port, user=user, password=password, database=database or None,
            connect_timeout=10, autocommit=True,
        )  # fmt: skip
        try:
            yield conn
        finally:
            conn.close()
    else:
        client = redis_client(host, port, username=user, password=password, socket_timeout=10)
        try:
            client.ping()
            yield client
        finally:
            client.close()


def can_login(datastore: str, where: dict[str, Any], user: str, password: str) -> bool:
    try:
        with session(datastore, where, user, password):
            return True
    except LOGIN_ERRORS:
        return False


def query(conn: Any, statement: str) -> list[tuple[Any, ...]]:
    """Rows of one SQL statement on a psycopg or PyMySQL connection."""
    if isinstance(conn, psycopg.Connection):
        cursor = conn.execute(statement)
        return list(cursor.fetchall()) if cursor.description else []
    with conn.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall())


def setting(datastore: str, conn: Any, name: str) -> str:
    """A server setting as the engine itself reports it (SHOW, @@, CONFIG GET)."""
    if datastore == "postgresql":
        return str(query(conn, f"SHOW {name}")[0][0])
    if datastore == "mariadb":
        return str(query(conn, f"SELECT @@GLOBAL.{name}")[0][0])
    value = conn.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def write(datastore: str, conn: Any, key: str, value: str) -> None:
    if datastore == "redis":
        conn.set(key, value)
        return
    query(conn, "CREATE TABLE IF NOT EXISTS kv (k VARCHAR(64) PRIMARY KEY, v TEXT)")
    query(conn, f"INSERT INTO kv VALUES ('{key}', '{value}')")  # test-made values only


def read(datastore: str, conn: Any, key: str) -> str | None:
    if datastore == "redis":
        value = conn.get(key)
        return None if value is None else value.decode()
    rows = query(conn, f"SELECT v FROM kv WHERE k = '{key}'")
    return str(rows[0][0]) if rows else None
