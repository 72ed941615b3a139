"""Redis's configuration files and ACL file, as Cellar wants them.

``redis.conf`` holds what Cellar decides (addresses, files, persistence, memory), then
includes ``redis-replication.conf``, this server's replication source if it is a replica,
and ends by including ``redis-user.conf``, the user's parameters, so those win.
:func:`render_config`, :func:`render_replication_config` and :func:`render_user_config`
are pure; the ``write_*`` functions report whether a file changed. :func:`write_admin_acl`
keeps the agent's own ACL user in the ACL file before the server starts, so no anonymous
access is ever open.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path

from cellar import parameters
from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.messages import ReplicationSource
from guestagent.engines.os_user import OsUser, write_if_changed
from guestagent.engines.tls_files import TlsFiles

logger = logging.getLogger(__name__)

CONFIG_FILE = "redis.conf"
USER_FILE = "redis-user.conf"
REPLICATION_FILE = "redis-replication.conf"
ACL_FILE = "users.acl"
TLS_FILE = "redis-tls.conf"
ADMIN_USER = "cellar"
DEFAULT_MEMORY_MB = 512
MAXMEMORY_SHARE = 0.75
BIND = re.compile(r"[0-9A-Fa-f.:*! -]{1,200}")
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}")  # a host name, IPv4 or IPv6 address
# A replica's full sync starts this long after it asks (Redis waits 5 s by default for
# more replicas to share the snapshot; Cellar adds replicas one at a time).
DISKLESS_SYNC_DELAY = 1
# Redis's own values for the parameters users may set, with Cellar's persistence on:
# removing a parameter from a configuration group brings its value back to these.
DEFAULTS = {
    "maxmemory-policy": "noeviction",
    "timeout": "0",
    "maxclients": "10000",
    "appendonly": "yes",
    "appendfsync": "everysec",
    "hz": "10",
    "slowlog-log-slower-than": "10000",
    "slowlog-max-len": "128",
    "lazyfree-lazy-eviction": "no",
    "databases": "16",
}
RULES = parameters.REDIS_7_0


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What Cellar decides about one Redis server."""

    port: int
    bind: str
    unix_socket: Path
    data_dir: Path  # holds redis.conf, the ACL file and the user's parameters
    redis_dir: Path  # Redis's working directory: RDB snapshots and the append-only files
    memory_mb: int = 0
    tls: TlsFiles | None = None  # the engine's certificate; None: no TLS


def maxmemory_bytes(memory_mb: int) -> int:
    """The memory Redis may hold in data: a share of the flavor's memory."""
    memory = memory_mb if memory_mb > 0 else DEFAULT_MEMORY_MB
    return int(memory * MAXMEMORY_SHARE) * 1024 * 1024


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(settings: ServerSettings) -> str:
    """The contents of ``redis.conf``."""
    if not BIND.fullmatch(settings.bind):
        raise ValueError(f"bind addresses {settings.bind!r} are not allowed")
    lines = [
        "# Written by Cellar's guest agent; changes here are overwritten.",
        f"port {int(settings.port)}",
        f"bind {settings.bind}",
        f"unixsocket {_quote(str(settings.unix_socket))}",
        "unixsocketperm 700",
        # Every client authenticates as an ACL user; the default user is off.
        "protected-mode no",
        "daemonize no",
        "supervised no",
        'logfile ""',
        f"pidfile {_quote(str(settings.redis_dir / 'redis.pid'))}",
        f"dir {_quote(str(settings.redis_dir))}",
        f"aclfile {_quote(str(settings.data_dir / ACL_FILE))}",
        "save 3600 1 300 100 60 10000",
        f"maxmemory {maxmemory_bytes(settings.memory_mb)}",
        f"repl-diskless-sync-delay {DISKLESS_SYNC_DELAY}",
        *(f"{name} {value}" for name, value in DEFAULTS.items()),
        _include(settings.data_dir / TLS_FILE),
        _include(settings.data_dir / REPLICATION_FILE),
        _include(settings.data_dir / USER_FILE),
        "",
    ]
    return "\n".join(lines)


def _include(path: Path) -> str:
    return f"include {_quote(str(path))}"


def render_replication_config(source: ReplicationSource | None) -> str:
    """The contents of ``redis-replication.conf``: ``source`` to replicate from, or none.

    The file holds the replication password in clear (Redis needs it to log in); like
    every file here it is private to the engine's OS user.
    """
    lines = ["# Written by Cellar's guest agent: where this server replicates from."]
    if source is not None:
        if not HOST.fullmatch(source.host) or not 0 < source.port < 65536:
            raise ValueError(f"replication source {source.host}:{source.port} is not allowed")
        lines += [
            f"replicaof {_quote(source.host)} {int(source.port)}",
            f"masteruser {_quote(source.user)}",
            f"masterauth {_quote(source.password)}",
            "replica-read-only yes",
        ]
    return "\n".join(lines) + "\n"


def redis_values(checked: dict[str, str]) -> dict[str, str]:
    """Checked parameter values as Redis spells them (booleans are yes/no)."""
    spelled = {}
    for name, value in checked.items():
        if RULES[name].type == "boolean":
            value = "yes" if value == "on" else "no"
        spelled[name] = value
    return spelled


def render_user_config(values: dict[str, str]) -> str:
    """The user's parameters, one per line; each value was checked against its rule."""
    lines = ["# Written by Cellar from the instance's configuration group."]
    lines += [f"{name} {value}" for name, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def write_config(settings: ServerSettings, owner: OsUser) -> bool:
    """Write ``redis.conf`` (and an empty replication file if there is none); True if
    ``redis.conf`` changed."""
    if not (settings.data_dir / REPLICATION_FILE).exists():
        write_replication_config(settings.data_dir, None, owner)
    changed = write_tls(settings.data_dir, settings.tls, settings.port, owner)
    changed |= write_if_changed(settings.data_dir / CONFIG_FILE, render_config(settings), owner)
    if changed:
        logger.info("wrote the Redis configuration in %s", settings.data_dir)
    return changed


def write_replication_config(
    data_dir: Path, source: ReplicationSource | None, owner: OsUser
) -> bool:
    """Make ``source`` (None: no source) the one a restarted server replicates from.

    A ``redis.conf`` written before replication existed gets its include line here, so
    the file is read at the next start. True if something changed.
    """
    text = render_replication_config(source)
    changed = write_if_changed(data_dir / REPLICATION_FILE, text, owner)
    config = data_dir / CONFIG_FILE
    if not config.exists():
        return changed
    lines = safe_files.read_text(config).splitlines()
    include = _include(data_dir / REPLICATION_FILE)
    if include in lines:
        return changed
    user_include = _include(data_dir / USER_FILE)
    at = lines.index(user_include) if user_include in lines else len(lines)
    lines.insert(at, include)
    return write_if_changed(config, "\n".join(lines) + "\n", owner) or changed


def write_tls(data_dir: Path, tls: TlsFiles | None, port: int, owner: OsUser) -> bool:
    """Write the TLS settings (the port speaks TLS alone once there is a certificate);
    True if they changed."""
    return write_if_changed(data_dir / TLS_FILE, tls_settings.redis(tls, port), owner)


def write_user_config(data_dir: Path, values: dict[str, str], owner: OsUser) -> bool:
    """Write the user's parameters (Redis spelling); True if the file changed."""
    return write_if_changed(data_dir / USER_FILE, render_user_config(values), owner)


def password_hash(password: str) -> str:
    """The form Redis keeps a password in (``#<sha256>``), so the clear text never travels."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def write_admin_acl(data_dir: Path, admin_password: str, owner: OsUser) -> bool:
    """Make the ACL file hold the agent's user; a new file also turns ``default`` off.

    Only for a stopped server: a running one would overwrite the file at its next ACL SAVE.
    """
    path = data_dir / ACL_FILE
    lines = safe_files.read_text(path, missing="").splitlines()
    kept = [line for line in lines if line.split()[:2] != ["user", ADMIN_USER]]
    if not any(line.split()[:2] == ["user", "default"] for line in kept):
        kept.insert(0, "user default off resetchannels -@all")
    kept.append(f"user {ADMIN_USER} on {password_hash(admin_password)} ~* &* +@all")
    return write_if_changed(path, "\n".join(kept) + "\n", owner)
