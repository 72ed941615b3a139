"""Users and settings of a running Redis server, through its ACL and CONFIG commands.

Use :class:`RedisAdmin` for anything that reads or changes users or live settings. The
agent connects over the server's unix socket (``redis_wire``) as its own ACL user
(``cellar``), whose random password is kept in a 0600 file of the data directory. Every
name is checked again here; passwords are sent as SHA-256 hashes (``#<hex>``), so no
command, log line or error ever holds one in clear. Every ACL change is saved to the
ACL file at once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from pathlib import Path

from cellar import catalog
from cellar.names import check_identifier, check_password
from guestagent import safe_files
from guestagent.engines.messages import CountSessionsRequest, DeleteUserRequest, User, check_access
from guestagent.engines.metrics import hit_ratio
from guestagent.engines.redis_config import ADMIN_USER, password_hash
from guestagent.engines.redis_wire import RedisConnection, Reply, ReplyError
from guestagent.errors import EngineDown, EngineError

logger = logging.getLogger(__name__)

VERSION = catalog.DATASTORES["redis"].versions[0]
RESERVED_USERS = VERSION.reserved_users
ROOT_USER = catalog.ROOT_USERS["redis"]
APP_RIGHTS = ("on", "~*", "&*", "+@all", "-@admin")  # the data, not the server
# Commands on the data only: @dangerous holds every @admin command, and FLUSHALL, KEYS...
READ_RIGHTS = ("on", "~*", "&*", "+@read", "+@connection", "-@dangerous")
WRITE_RIGHTS = ("on", "~*", "&*", "+@read", "+@write", "+@connection", "-@dangerous")
RIGHTS = {"": APP_RIGHTS, "read": READ_RIGHTS, "write": WRITE_RIGHTS}  # by ``User.access``
ROOT_RIGHTS = ("on", "~*", "&*", "+@all")
SHUTDOWN_WAIT = 20.0  # for an AOF rewrite that Redis will not exit during
METRICS_SECTIONS = ("server", "clients", "memory", "stats", "replication")
INFO_METRICS = {  # INFO field -> metrics name, where it is one value
    "connected_clients": "connections",
    "total_commands_processed": "commands_total",
    "used_memory": "engine_memory_bytes",
    "uptime_in_seconds": "uptime_seconds",
}


def checked_user(user: User) -> User:
    """``user`` if its name, password and access are acceptable, else InvalidInput."""
    check_identifier("user", user.name, RESERVED_USERS)
    check_password(user.password)
    check_access(user.access)
    return user


def load_or_create_password(path: Path) -> str:
    """The agent's own password, made once and kept in ``path`` (mode 0600, root's)."""
    try:
        return safe_files.read_text(path).strip()
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(32)
    data = (password + "\n").encode()
    safe_files.write_file(path, data, None, mode=0o600, scratch=path.name + ".new")
    return password


def info_metrics(info: dict[str, str]) -> dict[str, float]:
    """The ``metrics`` values in INFO's fields. A replica's lag is how long ago it last
    heard from its primary (which pings it every few seconds even when idle), left out
    while the link is down; Redis has no transactions to count."""
    values = {name: float(info[field]) for field, name in INFO_METRICS.items() if field in info}
    if "keyspace_hits" in info and "keyspace_misses" in info:
        hits, misses = float(info["keyspace_hits"]), float(info["keyspace_misses"])
        values["cache_hit_ratio"] = hit_ratio(hits, misses)
    last_heard = float(info.get("master_last_io_seconds_ago", "-1"))
    if info.get("role") == "slave" and last_heard >= 0:
        values["replication_lag_seconds"] = last_heard
    return values


def _text(reply: Reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class RedisAdmin:
    """Runs ACL and CONFIG commands as the agent's user over the unix socket."""

    def __init__(self, unix_socket: Path, password_file: Path) -> None:
        self.unix_socket = unix_socket
        self.password_file = password_file
        self._connection: RedisConnection | None = None
        self._lock = threading.Lock()  # one command at a time on the shared connection

    def run(self, *args: str) -> Reply:
        """One command; transport errors become EngineDown, error replies EngineError."""
        with self._lock:
            try:
                if self._connection is None:
                    password = safe_files.read_text(self.password_file).strip()
                    self._connection = RedisConnection(self.unix_socket, ADMIN_USER, password)
                return self._connection.command(*args)
            except OSError as exc:
                self._drop()  # a broken connection is made anew by the next command
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise EngineDown(f"redis is not accepting connections: {reason}") from exc
            except (ReplyError, ValueError) as exc:
                raise EngineError(f"redis refused {args[0]}: {exc}") from exc

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        """Drop the connection (for example after the server stopped)."""
        with self._lock:
            self._drop()

    def ping(self) -> None:
        self.run("PING")

    def info(self, *sections: str) -> dict[str, str]:
        """The ``name:value`` fields of the INFO sections named, in one command."""
        fields = {}
        for line in _text(self.run("INFO", *sections)).splitlines():
            name, colon, value = line.partition(":")
            if colon and not line.startswith("#"):
                fields[name] = value.strip()
        return fields

    def shutdown(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Ask the server to save a snapshot and exit; EngineError if it refused.

        Redis refuses while it writes its first append-only file (after a replica's full
        sync, or once the AOF is turned on): that is waited for, up to ``wait`` seconds.
        """
        self.ping()  # EngineDown here means the command could not be sent
        deadline = time.monotonic() + wait
        while True:
            try:
                with contextlib.suppress(EngineDown):  # the server closes the connection
                    self.run("SHUTDOWN", "SAVE")
                return
            except EngineError:
                if time.monotonic() >= deadline or not self._rewriting_aof():
                    raise
            time.sleep(0.05)

    def _rewriting_aof(self) -> bool:
        persistence = self.info("persistence")
        return "1" in (
            persistence.get("aof_rewrite_in_progress"),
            persistence.get("aof_rewrite_scheduled"),
        )

    def config_get(self, names: list[str]) -> dict[str, str]:
        values = {}
        for name in names:
            reply = self.run("CONFIG", "GET", name)
            pairs = reply if isinstance(reply, list) else []
            values[name] = _text(pairs[1]) if len(pairs) == 2 else ""
        return values

    def config_set(self, values: dict[str, str]) -> None:
        """Set live values, all or none (one CONFIG SET)."""
        if not values:
            return
        pairs = [item for pair in sorted(values.items()) for item in pair]
        self.run("CONFIG", "SET", *pairs)
        logger.info("set %s live", ", ".join(sorted(values)))

    def _user_exists(self, name: str) -> bool:
        return self.run("ACL", "GETUSER", name) is not None

    def create_user(self, user: User) -> bool:
        """An ACL user with the ``RIGHTS`` of its access on the data and none on the server."""
        user = checked_user(user)
        if self._user_exists(user.name):
            return False
        rights = RIGHTS[user.access]
        self.run("ACL", "SETUSER", user.name, "reset", password_hash(user.password), *rights)
        self.run("ACL", "SAVE")
        logger.info("created user %s", user.name)
        return True

    def list_users(self) -> list[User]:
        reply = self.run("ACL", "USERS")
        names = sorted(_text(n) for n in reply) if isinstance(reply, list) else []
        return [User(name=name) for name in names if name.lower() not in RESERVED_USERS]

    def delete_user(self, request: DeleteUserRequest) -> bool:
        """Drop the user; Redis closes its connections."""
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        if not self.run("ACL", "DELUSER", name):
            return False
        self.run("ACL", "SAVE")
        logger.info("dropped user %s", name)
        return True

    def count_sessions(self, request: CountSessionsRequest) -> int:
        """The clients in ``CLIENT LIST`` logged in as the user (Redis users have no host)."""
        name = request.name
        check_identifier("user", name, RESERVED_USERS)
        clients = _text(self.run("CLIENT", "LIST")).splitlines()
        return sum(f"user={name}" in client.split() for client in clients)

    def change_password(self, user: User) -> bool:
        """Replace every password of the user by the new one."""
        user = checked_user(user)
        if not self._user_exists(user.name):
            return False
        self.run("ACL", "SETUSER", user.name, "resetpass", password_hash(user.password))
        self.run("ACL", "SAVE")
        logger.info("changed the password of user %s", user.name)
        return True

    def enable_root(self, password: str) -> str:
        """Turn the ``default`` user on with ``password`` and every right."""
        check_password(password, "root")
        self.run("ACL", "SETUSER", ROOT_USER, "reset", password_hash(password), *ROOT_RIGHTS)
        self.run("ACL", "SAVE")
        logger.info("enabled the %s user", ROOT_USER)
        return ROOT_USER

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        values = {}
        for name in names:
            reply = self.run("CONFIG", "GET", name)
            if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
                values[name] = reply[1].decode()
        return values

    def disable_root(self) -> bool:
        """Turn the ``default`` user off again, with no password and no rights."""
        was_on = b"on" in _flags(self.run("ACL", "GETUSER", ROOT_USER))
        self.run("ACL", "SETUSER", ROOT_USER, "reset")
        self.run("ACL", "SAVE")
        logger.info("disabled the %s user", ROOT_USER)
        return was_on

    def metrics(self) -> dict[str, float]:
        """The ``info_metrics`` of the server, from one INFO."""
        return info_metrics(self.info(*METRICS_SECTIONS))


def _flags(reply: Reply) -> list[bytes]:
    """The ``flags`` of an ``ACL GETUSER`` reply (a flat list of names and values)."""
    if not isinstance(reply, list):
        return []
    for key, value in zip(reply[::2], reply[1::2], strict=False):
        if key == b"flags" and isinstance(value, list):
            return [f for f in value if isinstance(f, bytes)]
    return []
