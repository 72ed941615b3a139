"""Databases and users of a running PostgreSQL server, in SQL.

Use :class:`PostgresAdmin` for anything that changes or reads databases and roles. Every
name is checked again here (the caller is never trusted) and quoted with ``psycopg.sql``.
Passwords are turned into SCRAM secrets by libpq before they reach the server, so no
statement, log line or error ever holds one in clear. Databases created here are closed
to ``PUBLIC``: a user reaches the databases it was granted, and ``list_users`` shows them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import re
import time
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from cellar import catalog
from cellar.errors import InvalidInput
from cellar.names import check_identifier, check_password
from guestagent.engines.messages import (
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    GrantAccessRequest,
    RevokeAccessRequest,
    User,
    check_access,
)
from guestagent.engines.metrics import hit_ratio
from guestagent.engines.postgres_process import SUPERUSER, PostgresProcess
from guestagent.errors import EngineDown, EngineError

logger = logging.getLogger(__name__)

VERSION = catalog.DATASTORES["postgresql"].versions[0]
RESERVED_DATABASES = VERSION.reserved_databases
RESERVED_USERS = VERSION.reserved_users
DATABASE_OPTION = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
RELOAD_WAIT = 5.0
BAD_OPTIONS = ("22", "42")  # SQLSTATE classes: data exception, syntax or access rule
# What pg_rewind calls on its source server, beyond what a REPLICATION login may.
REWIND_FUNCTIONS = (
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
)
# What each ``User.access`` grants: on each database, then inside it (schema public).
DATABASE_RIGHTS = {"": "ALL PRIVILEGES", "read": "CONNECT", "write": "CONNECT, TEMPORARY"}
SCHEMA_GRANTS = {
    "": ("GRANT ALL ON SCHEMA public TO {}",),
    "read": (
        "GRANT USAGE ON SCHEMA public TO {}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
    ),
    "write": (
        "GRANT USAGE ON SCHEMA public TO {}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}",
    ),
}
# Every value of ``metrics`` in one row, summed over pg_stat_database's rows; the last
# three only mean something on a standby.
METRICS_QUERY = (
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
    " sum(xact_commit + xact_rollback)::float8, sum(blks_hit)::float8,"
    " sum(blks_read)::float8,"
    " extract(epoch FROM now() - pg_postmaster_start_time())::float8,"
    " pg_is_in_recovery(),"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,"
    " pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn(),"
    " (SELECT status = 'streaming' FROM pg_stat_wal_receiver)"
    " FROM pg_stat_database"
)


def checked_database(database: Database) -> Database:
    """``database`` if its name and options are acceptable, else InvalidInput."""
    check_identifier("database", database.name, RESERVED_DATABASES)
    for label, value in (
        ("character set", database.character_set),
        ("collation", database.collate),
    ):
        if value and not DATABASE_OPTION.fullmatch(value):
            raise InvalidInput(f"database {label} {value!r} is not allowed")
    return database


def checked_user(user: User) -> User:
    """``user`` if its name, password, database names, access and expiry are acceptable,
    with ``valid_until`` in UTC; else InvalidInput."""
    check_identifier("user", user.name, RESERVED_USERS)
    check_password(user.password)
    for name in user.databases:
        check_identifier("database", name, RESERVED_DATABASES)
    check_access(user.access)
    return dataclasses.replace(user, valid_until=checked_valid_until(user.valid_until))


def checked_valid_until(value: str) -> str:
    """``value`` (an ISO 8601 moment, UTC when it names no offset) in UTC, "" for "";
    InvalidInput when it is no moment."""
    if not value:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"valid_until {value[:80]!r} is not an RFC 3339 moment (such as 2024-05-01T12:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat()


def replay_lag(age: float | None, caught_up: bool | None, streaming: bool | None) -> float | None:
    """A standby's lag in seconds: how long ago the last transaction it replayed was
    committed on the primary (``age``). 0 when it has replayed all the WAL it received
    (an idle primary commits nothing, yet is not behind) or, streaming, has replayed
    nothing yet; None when it cannot say (nothing replayed and no stream)."""
    if caught_up or (age is None and streaming):
        return 0.0
    return None if age is None else max(0.0, age)


def _public(exc: psycopg.Error) -> str:
    """A short message for ``exc`` that never quotes the statement."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return str(primary or type(exc).__name__)


class PostgresAdmin:
    """Runs the users' and databases' SQL as the superuser over the server's socket."""

    def __init__(self, process: PostgresProcess) -> None:
        self.process = process

    @contextlib.contextmanager
    def connect(self, dbname: str = "postgres") -> Iterator[psycopg.Connection[TupleRow]]:
        """An autocommit superuser connection; driver errors become engine errors."""
        try:
            conn = psycopg.connect(**self.process.conninfo(dbname), autocommit=True)
        except psycopg.OperationalError as exc:
            raise EngineDown(f"postgres is not accepting connections: {_public(exc)}") from exc
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise EngineError(f"postgres refused: {_public(exc)}") from exc

    def ping(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT 1")

    def reload(self) -> None:
        """Reload the configuration and wait until new sessions see it."""
        with self.connect() as conn:
            row = conn.execute("SELECT pg_conf_load_time(), pg_reload_conf()").fetchone()
        before = row[0] if row else None
        deadline = time.monotonic() + RELOAD_WAIT
        while time.monotonic() < deadline:
            with self.connect() as conn:
                loaded = conn.execute("SELECT pg_conf_load_time()").fetchone()
            if loaded and loaded[0] != before:
                return
            time.sleep(0.02)
        logger.warning("the configuration reload was not seen within %.0f s", RELOAD_WAIT)

    def pending_restart(self) -> list[str]:
        """Parameters whose new value waits for a restart (read after a reload)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def create_database(self, database: Database) -> bool:
        database = checked_database(database)
        name = sql.Identifier(database.name)
        options: list[sql.Composable] = []
        if database.character_set:
            options.append(sql.SQL("ENCODING {}").format(sql.Literal(database.character_set)))
        if database.collate:
            collate = sql.Literal(database.collate)
            options.append(sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(collate, collate))
        if options:
            options.append(sql.SQL("TEMPLATE template0"))
        with self.connect() as conn:
            created = not self._database_exists(conn, database.name)
            if created:
                statement = sql.SQL("CREATE DATABASE {} {}").format(
                    name, sql.SQL(" ").join(options)
                )
                try:
                    conn.execute(statement)
                except psycopg.errors.DuplicateDatabase:
                    created = False
                except psycopg.Error as exc:
                    if (exc.sqlstate or "")[:2] not in BAD_OPTIONS:
                        raise
                    raise InvalidInput(f"database {database.name!r}: {_public(exc)}") from exc
            conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(name))
        if created:
            logger.info("created database %s", database.name)
        return created

    def list_databases(self) -> list[Database]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT datname, pg_encoding_to_char(encoding), datcollate FROM pg_database"
                " WHERE NOT datistemplate AND datallowconn ORDER BY datname"
            ).fetchall()
        return [
            Database(name=str(name), character_set=str(charset), collate=str(collate))
            for name, charset, collate in rows
            if not _reserved(str(name), RESERVED_DATABASES)
        ]

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        name = request.name
        check_identifier("database", name, RESERVED_DATABASES)
        with self.connect() as conn:
            if not self._database_exists(conn, name):
                return False
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        logger.info("dropped database %s", name)
        return True

    def create_user(self, user: User) -> bool:
        user = checked_user(user)
        role = sql.Identifier(user.name)
        with self.connect() as conn:
            for dbname in user.databases:
                if not self._database_exists(conn, dbname):
                    raise InvalidInput(f"database {dbname!r} does not exist")
            created = not self._role_exists(conn, user.name)
            if created:
                statement = sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}{}").format(
                    role, self._scram(conn, user.name, user.password), _expiry(user.valid_until)
                )
                try:
                    conn.execute(statement)
                except psycopg.errors.DuplicateObject:
                    created = False
            if user.access == "read":
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role)
                )
            for dbname in user.databases:
                conn.execute(
                    sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                        sql.SQL(DATABASE_RIGHTS[user.access]), sql.Identifier(dbname), role
                    )
                )
        for dbname in user.databases:
            with self.connect(dbname) as conn:
                for grant in SCHEMA_GRANTS[user.access]:
                    conn.execute(sql.SQL(grant).format(role))
        if created:
            logger.info("created user %s with access to %s", user.name, list(user.databases))
        return created

    def list_users(self) -> list[User]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT r.rolname, d.datname FROM pg_roles r"
                " LEFT JOIN pg_database d ON NOT d.datistemplate AND d.datallowconn"
                "  AND has_database_privilege(r.oid, d.oid, 'CONNECT')"
                " WHERE r.rolname !~ '^pg_' ORDER BY r.rolname, d.datname"
            ).fetchall()
        grants: dict[str, list[str]] = {}
        for role, dbname in rows:
            if _reserved(str(role), RESERVED_USERS):
                continue
            names = grants.setdefault(str(role), [])
            if dbname is not None and not _reserved(str(dbname), RESERVED_DATABASES):
                names.append(str(dbname))
        return [User(name=name, databases=tuple(dbs)) for name, dbs in grants.items()]

    def _scram(self, conn: psycopg.Connection[TupleRow], name: str, password: str) -> sql.Literal:
        """The SCRAM secret of ``password``, made by libpq: the server never sees it in clear."""
        secret = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
        return sql.Literal(secret.decode())

    def change_password(self, user: User) -> bool:
        check_identifier("user", user.name, RESERVED_USERS)
        check_password(user.password)
        with self.connect() as conn:
            if not self._role_exists(conn, user.name):
                return False
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(user.name), self._scram(conn, user.name, user.password)
                )
            )
        logger.info("changed the password of user %s", user.name)
        return True

    def grant_access(self, request: GrantAccessRequest) -> None:
        name, databases = request.name, request.databases
        check_identifier("user", name, RESERVED_USERS)
        for dbname in databases:
            check_identifier("database", dbname, RESERVED_DATABASES)
        role = sql.Identifier(name)
        with self.connect() as conn:
            if not self._role_exists(conn, name):
                raise InvalidInput(f"user {name!r} does not exist")
            for dbname in databases:
                if not self._database_exists(conn, dbname):
                    raise InvalidInput(f"database {dbname!r} does not exist")
            for dbname in databases:
                conn.execute(
                    sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(
                        sql.Identifier(dbname), role
                    )
                )
        for dbname in databases:
            with self.connect(dbname) as conn:
                conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
        logger.info("granted user %s access to %s", name, list(databases))

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        name, database = request.name, request.database
        check_identifier("user", name, RESERVED_USERS)
        check_identifier("database", database, RESERVED_DATABASES)
        role = sql.Identifier(name)
        with self.connect() as conn:
            if not self._role_exists(conn, name) or not self._database_exists(conn, database):
                return False
            row = conn.execute(
                "SELECT has_database_privilege(%s, %s, 'CONNECT')", (name, database)
            ).fetchone()
            if not (row and row[0]):
                return False
            conn.execute(
                sql.SQL("REVOKE ALL PRIVILEGES ON DATABASE {} FROM {}").format(
                    sql.Identifier(database), role
                )
            )
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = %s AND datname = %s",
                (name, database),
            )
        with self.connect(database) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(role))
        logger.info("revoked the access of user %s to %s", name, database)
        return True

    def enable_root(self, password: str) -> str:
        """Give the superuser a password, so it can log in over TCP (SCRAM, as everyone)."""
        check_password(password, "root")
        with self.connect() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), self._scram(conn, SUPERUSER, password)
                )
            )
        logger.info("enabled root: %s can log in with a password", SUPERUSER)
        return SUPERUSER

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
            ).fetchall()
        return {str(name): str(setting) for name, setting in rows}

    def disable_root(self) -> bool:
        """Clear the superuser's password: TCP logins need one, the local socket does not."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s", (SUPERUSER,)
            ).fetchone()
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD NULL").format(sql.Identifier(SUPERUSER))
            )
        logger.info("disabled root: %s has no password", SUPERUSER)
        return bool(row and row[0])

    def metrics(self) -> dict[str, float]:
        """Client sessions, transactions, the shared buffers' hit ratio (over every
        database) and uptime, and on a standby its ``replay_lag``, in one query."""
        with self.connect() as conn:
            row = conn.execute(METRICS_QUERY).fetchone()
        assert row is not None  # an aggregate always has its row
        sessions, transactions, hits, reads, uptime, standby, age, caught_up, streaming = row
        values = {
            "connections": float(sessions),
            "transactions_total": float(transactions or 0),
            "cache_hit_ratio": hit_ratio(float(hits or 0), float(reads or 0)),
            "uptime_seconds": float(uptime),
        }
        lag = replay_lag(age, caught_up, streaming) if standby else None
        if lag is not None:
            values["replication_lag_seconds"] = lag
        return values

    def delete_user(self, request: DeleteUserRequest) -> bool:
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        role = sql.Identifier(name)
        with self.connect() as conn:
            if not self._role_exists(conn, name):
                return False
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))  # no new sessions
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            dbnames = [
                str(row[0])
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
                )
            ]
        for dbname in dbnames:
            with self.connect(dbname) as conn:
                conn.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, sql.Identifier(SUPERUSER))
                )
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with self.connect() as conn:
            try:
                conn.execute(sql.SQL("DROP ROLE {}").format(role))
            except psycopg.errors.UndefinedObject:
                return False
        logger.info("dropped user %s", name)
        return True

    def count_sessions(self, request: CountSessionsRequest) -> int:
        """The client backends logged in as the user now (roles have no host here)."""
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE usename = %s AND backend_type = 'client backend'",
                (name,),
            ).fetchone()
        return int(row[0]) if row else 0

    def ensure_replication_role(self, name: str, password: str) -> bool:
        """Create the account replicas stream with (LOGIN REPLICATION), or give it
        ``password`` again, and let it read what ``pg_rewind`` reads from a source; True
        when it was created. The caller checks ``name``, a name users cannot take."""
        check_password(password, "replication")
        role = sql.Identifier(name)
        with self.connect() as conn:
            created = not self._role_exists(conn, name)
            verb = "CREATE" if created else "ALTER"
            conn.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN REPLICATION NOSUPERUSER PASSWORD {}").format(
                    role, self._scram(conn, name, password)
                )
            )
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE postgres TO {}").format(role))
            for function in REWIND_FUNCTIONS:
                conn.execute(
                    sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), role)
                )
        logger.info("%s the replication account %s", "created" if created else "updated", name)
        return created

    @staticmethod
    def _database_exists(conn: psycopg.Connection[TupleRow], name: str) -> bool:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    @staticmethod
    def _role_exists(conn: psycopg.Connection[TupleRow], name: str) -> bool:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        return row is not None


def _expiry(valid_until: str) -> sql.Composable:
    """The ``VALID UNTIL`` clause of a checked ``valid_until``; nothing when it is empty."""
    if not valid_until:
        return sql.SQL("")
    return sql.SQL(" VALID UNTIL {}").format(sql.Literal(valid_until))


def _reserved(name: str, reserved: frozenset[str]) -> bool:
    return name.lower() in reserved or name.lower().startswith("pg_")
