"""Databases, users and global variables of a running MariaDB server, in SQL.

Use :class:`MariadbAdmin` for anything that changes or reads databases, accounts or
variables. Every name is checked again here (the caller is never trusted) and quoted with
backticks; user names and hosts go in as escaped string literals. Passwords are hashed
here (``mysql_native_password``), so no statement holds one in clear, and the agent's
sessions are left out of the general and slow logs. Grants name their database with ``_``
escaped, so a grant on ``shop_db`` never reaches ``shopxdb``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import pymysql
import pymysql.cursors

from cellar import catalog
from cellar.errors import InvalidInput
from cellar.names import IDENTIFIER, check_identifier, check_password
from guestagent.engines.mariadb_process import MariadbProcess, admin_account
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
from guestagent.errors import EngineDown, EngineError

logger = logging.getLogger(__name__)

VERSION = catalog.DATASTORES["mariadb"].versions[0]
RESERVED_DATABASES = VERSION.reserved_databases
RESERVED_USERS = VERSION.reserved_users
DATABASE_OPTION = re.compile(r"[A-Za-z0-9_]{1,64}")
HOST = re.compile(r"[A-Za-z0-9.:%_-]{1,255}")
VARIABLE = re.compile(r"[a-z_]{1,64}")
DEFAULT_HOST = "%"
ROOT = "root"
CANNOT_CONNECT = (2002, 2003, 2006, 2013)
BAD_OPTIONS = (1115, 1253, 1273)  # unknown character set, collation, or a mismatch
STATEMENT_QUOTING = (1064, 1149)  # syntax errors quote the statement: never shown
RIGHTS = {  # what each ``User.access`` grants on a database
    "": "ALL PRIVILEGES",
    "read": "SELECT, SHOW VIEW",
    "write": "SELECT, INSERT, UPDATE, DELETE, SHOW VIEW",
}
# The sessions of an account: its user name, from a client host its host pattern matches
# (PROCESSLIST shows TCP clients as host:port).
ACCOUNT_SESSIONS = "USER = %s AND (HOST LIKE %s OR HOST LIKE CONCAT(%s, ':%%'))"
STATUS_METRICS = {  # SHOW GLOBAL STATUS name -> metrics name, where it is one value
    "Threads_connected": "connections",
    "Questions": "commands_total",
    "Uptime": "uptime_seconds",
}
STATUS_READ = (
    *STATUS_METRICS,
    "Com_commit",
    "Com_rollback",
    "Innodb_buffer_pool_reads",
    "Innodb_buffer_pool_read_requests",
)


def checked_host(host: str) -> str:
    """``host`` (``%`` when empty) if it is a plain host pattern, else InvalidInput."""
    host = host or DEFAULT_HOST
    if not HOST.fullmatch(host):
        raise InvalidInput(
            f"host {host!r} is not allowed: use letters, digits and . - : % _ (1 to 255)"
        )
    return host


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
    """``user`` if its name, host, password, database names and access are acceptable."""
    check_identifier("user", user.name, RESERVED_USERS)
    checked_host(user.host)
    check_password(user.password)
    for name in user.databases:
        check_identifier("database", name, RESERVED_DATABASES)
    check_access(user.access)
    return user


def password_hash(password: str) -> str:
    """The ``mysql_native_password`` hash of ``password`` (UTF-8, as the clients send it)."""
    # SHA1(SHA1(password)) is the plugin's own format; the server stores exactly this.
    inner = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def grant_pattern(database: str) -> str:
    """How a grant names ``database``: with the wildcards ``_`` and ``%`` escaped."""
    return database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def _unescape(pattern: str) -> str:
    return re.sub(r"\\(.)", r"\1", pattern)


def status_metrics(status: dict[str, str], link: dict[str, Any] | None) -> dict[str, float]:
    """The ``metrics`` values in ``SHOW GLOBAL STATUS`` (by variable name) and, on a
    replica, in its ``SHOW SLAVE STATUS`` row (``link``; None on a primary).

    ``transactions_total`` counts COMMIT and ROLLBACK statements, so an autocommitted
    statement is in ``commands_total`` (Questions) alone; the lag is left out while the
    replica cannot say it (its SQL thread stopped, or its link to the source down).
    """
    values = {
        name: float(status[field]) for field, name in STATUS_METRICS.items() if field in status
    }
    if "Com_commit" in status and "Com_rollback" in status:
        values["transactions_total"] = float(status["Com_commit"]) + float(status["Com_rollback"])
    if "Innodb_buffer_pool_read_requests" in status and "Innodb_buffer_pool_reads" in status:
        requests = float(status["Innodb_buffer_pool_read_requests"])
        reads = float(status["Innodb_buffer_pool_reads"])  # those that went to the disk
        values["cache_hit_ratio"] = hit_ratio(requests - reads, reads)
    behind = None if link is None else link.get("Seconds_Behind_Master")
    if behind is not None and str(behind) != "":
        values["replication_lag_seconds"] = float(behind)
    return values


def _public(exc: pymysql.MySQLError) -> str:
    """A short message for ``exc`` that never quotes a statement."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if code in STATEMENT_QUOTING or len(exc.args) < 2:
        return f"error {code}" if code else type(exc).__name__
    return f"{exc.args[1]} (error {code})"


class MariadbAdmin:
    """Runs the users', databases' and variables' SQL over the server's socket."""

    def __init__(self, process: MariadbProcess) -> None:
        self.process = process

    @contextlib.contextmanager
    def connect(self) -> Iterator[pymysql.cursors.Cursor]:
        """A cursor of an autocommit session that logs nothing; errors become engine errors."""
        try:
            conn = self.process.connect()
        except pymysql.MySQLError as exc:
            raise EngineDown(f"mariadb is not accepting connections: {_public(exc)}") from exc
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET SESSION sql_log_off = 1, log_slow_query = 0")
                yield cursor
        except pymysql.OperationalError as exc:
            if exc.args and exc.args[0] in CANNOT_CONNECT:
                raise EngineDown(f"mariadb went away: {_public(exc)}") from exc
            raise EngineError(f"mariadb refused: {_public(exc)}") from exc
        except pymysql.MySQLError as exc:
            raise EngineError(f"mariadb refused: {_public(exc)}") from exc
        finally:
            conn.close()

    def ping(self) -> None:
        with self.connect() as cursor:
            cursor.execute("SELECT 1")

    # Variables

    def variable(self, name: str) -> str | None:
        """The running global value of ``name``, as text."""
        if not VARIABLE.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a variable name")
        with self.connect() as cursor:
            cursor.execute(f"SELECT @@GLOBAL.{name}")
            row = cursor.fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_global(self, name: str, value: str | int | float | None) -> None:
        """``SET GLOBAL name = value``; ``None`` puts back the server's default."""
        if not VARIABLE.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a variable name")
        with self.connect() as cursor:
            if value is None:
                cursor.execute(f"SET GLOBAL {name} = DEFAULT")
            else:
                cursor.execute(f"SET GLOBAL {name} = %s", (value,))

    def innodb_lsn(self) -> int:
        """InnoDB's current log sequence number (where an incremental backup may start)."""
        with self.connect() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")
            row = cursor.fetchone()
        return int(row[1]) if row is not None else 0

    # Databases

    def create_database(self, database: Database) -> bool:
        database = checked_database(database)
        options = ""
        if database.character_set:
            options += f" CHARACTER SET {database.character_set}"
        if database.collate:
            options += f" COLLATE {database.collate}"
        with self.connect() as cursor:
            if self._database_exists(cursor, database.name):
                return False
            try:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS {quote_name(database.name)}{options}"
                )
            except pymysql.MySQLError as exc:
                if not exc.args or exc.args[0] not in BAD_OPTIONS:
                    raise
                raise InvalidInput(f"database {database.name!r}: {_public(exc)}") from exc
        logger.info("created database %s", database.name)
        return True

    def list_databases(self) -> list[Database]:
        with self.connect() as cursor:
            cursor.execute(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
                " FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME"
            )
            rows = cursor.fetchall()
        return [
            Database(name=str(name), character_set=str(charset), collate=str(collate))
            for name, charset, collate in rows
            if str(name).lower() not in RESERVED_DATABASES
        ]

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        name = request.name
        check_identifier("database", name, RESERVED_DATABASES)
        with self.connect() as cursor:
            if not self._database_exists(cursor, name):
                return False
            self._end_sessions(cursor, "DB = %s", (name,))
            cursor.execute("SELECT User, Host FROM mysql.db WHERE Db = %s", (grant_pattern(name),))
            for user, host in cursor.fetchall():
                cursor.execute(
                    f"REVOKE ALL PRIVILEGES ON {quote_name(grant_pattern(name))}.* FROM %s@%s",
                    (user, host),
                )
            cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(name)}")
        logger.info("dropped database %s", name)
        return True

    # Users

    def create_user(self, user: User) -> bool:
        user = checked_user(user)
        host = checked_host(user.host)
        with self.connect() as cursor:
            for dbname in user.databases:
                if not self._database_exists(cursor, dbname):
                    raise InvalidInput(f"database {dbname!r} does not exist")
            created = not self._user_exists(cursor, user.name, host)
            if created:
                cursor.execute(
                    "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s",
                    (user.name, host, password_hash(user.password)),
                )
            for dbname in user.databases:
                self._grant(cursor, user.name, host, dbname, RIGHTS[user.access])
        if created:
            logger.info(
                "created user %s@%s with access to %s", user.name, host, list(user.databases)
            )
        return created

    def list_users(self) -> list[User]:
        with self.connect() as cursor:
            cursor.execute(
                "SELECT User, Host FROM mysql.user WHERE is_role = 'N' ORDER BY User, Host"
            )
            accounts = [(str(user), str(host)) for user, host in cursor.fetchall()]
            cursor.execute("SELECT User, Host, Db FROM mysql.db ORDER BY Db")
            grants: dict[tuple[str, str], list[str]] = {}
            for user, host, pattern in cursor.fetchall():
                grants.setdefault((str(user), str(host)), []).append(_unescape(str(pattern)))
        return [
            User(name=name, host=host, databases=tuple(grants.get((name, host), ())))
            for name, host in accounts
            if _listed(name)
        ]

    def delete_user(self, request: DeleteUserRequest) -> bool:
        """Drop the account, then end its open sessions (they outlive a DROP USER)."""
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        host = checked_host(request.host)
        with self.connect() as cursor:
            if not self._user_exists(cursor, name, host):
                return False
            cursor.execute("DROP USER IF EXISTS %s@%s", (name, host))
            ended = self._end_sessions(cursor, ACCOUNT_SESSIONS, (name, host, host))
        logger.info("dropped user %s@%s and ended %d sessions", name, host, ended)
        return True

    def count_sessions(self, request: CountSessionsRequest) -> int:
        """The sessions open now of the user at its host pattern (``%`` when empty)."""
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        host = checked_host(request.host)
        with self.connect() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE " + ACCOUNT_SESSIONS,
                (name, host, host),
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def change_password(self, user: User) -> bool:
        check_identifier("user", user.name, RESERVED_USERS)
        host = checked_host(user.host)
        check_password(user.password)
        with self.connect() as cursor:
            if not self._user_exists(cursor, user.name, host):
                return False
            cursor.execute(
                "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s",
                (user.name, host, password_hash(user.password)),
            )
        logger.info("changed the password of %s@%s", user.name, host)
        return True

    def grant_access(self, request: GrantAccessRequest) -> None:
        name, databases = request.name, request.databases
        check_identifier("user", name, RESERVED_USERS)
        host = checked_host(request.host)
        for dbname in databases:
            check_identifier("database", dbname, RESERVED_DATABASES)
        with self.connect() as cursor:
            if not self._user_exists(cursor, name, host):
                raise InvalidInput(f"user {name!r}@{host!r} does not exist")
            for dbname in databases:
                if not self._database_exists(cursor, dbname):
                    raise InvalidInput(f"database {dbname!r} does not exist")
            for dbname in databases:
                self._grant(cursor, name, host, dbname)
        logger.info("granted %s@%s access to %s", name, host, list(databases))

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        name, database = request.name, request.database
        check_identifier("user", name, RESERVED_USERS)
        host = checked_host(request.host)
        check_identifier("database", database, RESERVED_DATABASES)
        pattern = grant_pattern(database)
        with self.connect() as cursor:
            cursor.execute(
                "SELECT 1 FROM mysql.db WHERE User = %s AND Host = %s AND Db = %s",
                (name, host, pattern),
            )
            if cursor.fetchone() is None:
                return False
            cursor.execute(
                f"REVOKE ALL PRIVILEGES ON {quote_name(pattern)}.* FROM %s@%s", (name, host)
            )
        logger.info("revoked the access of %s@%s to %s", name, host, database)
        return True

    def enable_root(self, password: str) -> str:
        """Let ``root`` log in from anywhere with ``password`` and every privilege."""
        check_password(password, kind="root")
        secret = password_hash(password)
        with self.connect() as cursor:
            cursor.execute(
                "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s",
                (ROOT, DEFAULT_HOST, secret),
            )
            cursor.execute(
                "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (ROOT, DEFAULT_HOST, secret)
            )
            cursor.execute(
                "GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (ROOT, DEFAULT_HOST)
            )
        logger.info("enabled root over the network")
        return ROOT

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        wanted = {name.lower() for name in names}
        with self.connect() as cursor:
            cursor.execute("SHOW GLOBAL VARIABLES")
            rows = cursor.fetchall()
        return {str(k).lower(): str(v) for k, v in rows if str(k).lower() in wanted}

    def disable_root(self) -> bool:
        """Drop ``root@%``; ``root`` on the local socket, the agent's own login, stays."""
        with self.connect() as cursor:
            cursor.execute(
                "SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (ROOT, DEFAULT_HOST)
            )
            if cursor.fetchone() is None:
                return False
            cursor.execute("DROP USER %s@%s", (ROOT, DEFAULT_HOST))
        logger.info("disabled root over the network")
        return True

    def metrics(self) -> dict[str, float]:
        """The ``status_metrics`` of the server: its status counters and, on a replica,
        its link to the source, in two statements on one session."""
        with self.connect() as cursor:
            cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN %s", (STATUS_READ,))
            status = {str(name): str(value) for name, value in cursor.fetchall()}
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            names = [str(column[0]) for column in cursor.description or ()]
        link = None if row is None else dict(zip(names, row, strict=True))
        if link is not None and not link.get("Master_Host"):
            link = None  # a slave configuration without a source is no replica
        return status_metrics(status, link)

    @staticmethod
    def _grant(
        cursor: pymysql.cursors.Cursor,
        name: str,
        host: str,
        dbname: str,
        rights: str = RIGHTS[""],
    ) -> None:
        cursor.execute(
            f"GRANT {rights} ON {quote_name(grant_pattern(dbname))}.* TO %s@%s", (name, host)
        )

    @staticmethod
    def _end_sessions(cursor: pymysql.cursors.Cursor, where: str, args: tuple[str, ...]) -> int:
        """KILL every other session that PROCESSLIST's ``where`` picks; returns how many."""
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            f" WHERE {where} AND ID <> CONNECTION_ID()",
            args,
        )
        sessions = [int(session) for (session,) in cursor.fetchall()]
        for session in sessions:
            with contextlib.suppress(pymysql.MySQLError):  # it may have ended since
                cursor.execute("KILL CONNECTION %s", (session,))
        return len(sessions)

    @staticmethod
    def _database_exists(cursor: pymysql.cursors.Cursor, name: str) -> bool:
        cursor.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        return cursor.fetchone() is not None

    @staticmethod
    def _user_exists(cursor: pymysql.cursors.Cursor, name: str, host: str) -> bool:
        cursor.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (name, host))
        return cursor.fetchone() is not None


def _listed(name: str) -> bool:
    """True for the users' accounts: not the engine's own, not the agent's."""
    return (
        bool(IDENTIFIER.fullmatch(name))
        and name.lower() not in RESERVED_USERS
        and name != admin_account()
    )
