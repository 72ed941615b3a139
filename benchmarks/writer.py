"""A client that writes a counter continuously and remembers which writes were acknowledged.

Used by ``benchmarks/failover.py`` and the replication tests: it writes 1, 2, 3, ... through
one address (a replica set's rw endpoint), reconnecting after every error, so afterwards
one can ask which acknowledged writes are missing and how long writes were refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from typing import Any

import psycopg
import pymysql
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PACE = 0.01  # seconds between writes: light, steady load
CONNECT_TIMEOUT = 2
OUTAGE = 0.5  # a pause between acknowledged writes this long is an outage, not noise


@dataclasses.dataclass(frozen=True)
class Login:
    datastore: str
    host: str
    port: int
    user: str
    password: str
    database: str = ""
    ca_file: str = ""  # Cellar's CA: Redis ports speak TLS alone; "" trusts any certificate


def connect(login: Login) -> Any:
    if login.datastore == "postgresql":
        return psycopg.connect(
            host=login.host, port=login.port, user=login.user, password=login.password,
            dbname=login.database or "postgres", connect_timeout=CONNECT_TIMEOUT, autocommit=True,
        )  # fmt: skip
    if login.datastore == "mariadb":
        return pymysql.connect(
            host=login.host, port=login.port, user=login.user, password=login.password,
            database=login.database or None, connect_timeout=CONNECT_TIMEOUT,
            read_timeout=CONNECT_TIMEOUT, write_timeout=CONNECT_TIMEOUT, autocommit=True,
        )  # fmt: skip
    client = redis.Redis(
        host=login.host, port=login.port, username=login.user, password=login.password,
        ssl=True, ssl_ca_certs=login.ca_file or None, ssl_check_hostname=bool(login.ca_file),
        ssl_cert_reqs="required" if login.ca_file else "none",
        socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # every failure shows, as with the SQL clients
    )  # fmt: skip
    client.ping()
    return client


def sql(conn: Any, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    if isinstance(conn, psycopg.Connection):
        cursor = conn.execute(statement, args or None)
        return list(cursor.fetchall()) if cursor.description else []
    with conn.cursor() as cursor:
        cursor.execute(statement, args or None)
        return list(cursor.fetchall())


def prepare_counter(conn: Any) -> None:
    if not isinstance(conn, redis.Redis):
        sql(conn, "CREATE TABLE IF NOT EXISTS counter (n BIGINT PRIMARY KEY)")


def write_one(conn: Any, number: int) -> None:
    if isinstance(conn, redis.Redis):
        conn.rpush("counter", number)
    else:
        sql(conn, "INSERT INTO counter (n) VALUES (%s)", number)


def stored(conn: Any) -> set[int]:
    """Every counter value the server holds."""
    if isinstance(conn, redis.Redis):
        return {int(v) for v in conn.lrange("counter", 0, -1)}
    return {int(row[0]) for row in sql(conn, "SELECT n FROM counter")}


def close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection may fail to close
        conn.close()


class CounterWriter:
    """Writes the counter on a thread until ``stop``; keeps (number, time) of every ack."""

    def __init__(self, login: Login) -> None:
        self.login = login
        self.acked: list[tuple[int, float]] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counter-writer", daemon=True)

    def start(self) -> CounterWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = None
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                if conn is None:
                    conn = connect(self.login)
                write_one(conn, number)
                self.acked.append((number, time.monotonic()))
            except Exception as exc:  # noqa: BLE001  (every failure means: reconnect, go on)
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"[:200]))
                if conn is not None:
                    close(conn)
                conn = None
            self._stop.wait(PACE)
        if conn is not None:
            close(conn)

    def acked_numbers(self) -> set[int]:
        return {number for number, _at in self.acked}

    def first_ack_after(self, moment: float) -> float | None:
        return next((at for _n, at in self.acked if at > moment), None)

    def back_after(self, moment: float, outage: float = OUTAGE) -> float | None:
        """When writes worked again after an outage that began at ``moment``: the end of
        the first pause of at least ``outage`` seconds between acknowledged writes that
        ends after it (None while it lasts)."""
        start = self.last_ack_before(moment)
        times = [at for _n, at in self.acked if start is None or at >= start]
        return next((b for a, b in itertools.pairwise(times) if b - a >= outage), None)

    def last_ack_before(self, moment: float) -> float | None:
        before = [at for _n, at in self.acked if at <= moment]
        return before[-1] if before else None

    def longest_gap(self, after: float) -> float:
        """The longest time without an acknowledged write, from the last ack before
        ``after`` on (the write-unavailability window of a change made then)."""
        times = [at for _n, at in self.acked]
        start = self.last_ack_before(after)
        window = [t for t in times if start is None or t >= start]
        return max((b - a for a, b in itertools.pairwise(window)), default=0.0)
