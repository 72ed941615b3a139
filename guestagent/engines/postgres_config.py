"""PostgreSQL's configuration files, as Cellar wants them.

:func:`render_settings` and :func:`render_hba` are pure (tested on their own);
:func:`write_config` puts them in a data directory and reports whether anything changed,
so a running server is only reloaded when needed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from guestagent.engines.os_user import OsUser

logger = logging.getLogger(__name__)

SETTINGS_FILE = "cellar.conf"
USER_FILE = "cellar-user.conf"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
USER_INCLUDE_LINE = f"include_if_exists = '{USER_FILE}'"
DEFAULT_MEMORY_MB = 512
MIN_SHARED_BUFFERS_MB = 16


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What Cellar decides about one PostgreSQL server."""

    port: int
    socket_dir: Path
    memory_mb: int = 0
    listen_addresses: str = "*"
    max_connections: int = 100


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_settings(settings: ServerSettings) -> str:
    """The contents of ``cellar.conf``, derived from the flavor's memory."""
    memory = settings.memory_mb if settings.memory_mb > 0 else DEFAULT_MEMORY_MB
    shared_buffers = max(MIN_SHARED_BUFFERS_MB, memory // 4)
    effective_cache = max(shared_buffers, memory * 3 // 4)
    maintenance = max(16, min(memory // 16, 1024))
    lines = [
        "# Written by Cellar's guest agent; changes here are overwritten.",
        f"listen_addresses = {_quote(settings.listen_addresses)}",
        f"port = {int(settings.port)}",
        f"unix_socket_directories = {_quote(str(settings.socket_dir))}",
        f"max_connections = {int(settings.max_connections)}",
        "password_encryption = 'scram-sha-256'",
        f"shared_buffers = {shared_buffers}MB",
        f"effective_cache_size = {effective_cache}MB",
        f"maintenance_work_mem = {maintenance}MB",
        # A failing statement could carry a password secret: never log statements.
        "log_min_error_statement = panic",
        "log_statement = 'none'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "",
    ]
    return "\n".join(lines)


def render_hba() -> str:
    """The contents of ``pg_hba.conf``: trust on the socket (backups too), SCRAM over TCP."""
    return "\n".join(
        [
            "# Written by Cellar's guest agent; changes here are overwritten.",
            "# TYPE  DATABASE  USER  ADDRESS     METHOD",
            "local   all       all               trust",
            "local   replication all             trust",  # pg_basebackup, as the superuser
            "host    all       all   0.0.0.0/0   scram-sha-256",
            "host    all       all   ::/0        scram-sha-256",
            "",
        ]
    )


def _write_if_changed(path: Path, text: str, owner: OsUser) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    scratch = path.with_name(path.name + ".cellar-new")
    scratch.write_text(text)
    os.chmod(scratch, 0o600)
    owner.own(scratch)
    os.replace(scratch, path)
    return True


def write_hba(pgdata: Path, owner: OsUser) -> bool:
    """Write Cellar's access rules alone (an instance prepared by an older agent may lack
    the replication rule); True if the file changed and the server needs a reload."""
    return _write_if_changed(pgdata / "pg_hba.conf", render_hba(), owner)


def write_config(pgdata: Path, settings: ServerSettings, owner: OsUser) -> bool:
    """Write Cellar's settings and access rules into ``pgdata``; True if anything changed."""
    changed = _write_if_changed(pgdata / SETTINGS_FILE, render_settings(settings), owner)
    changed |= write_hba(pgdata, owner)
    main = pgdata / "postgresql.conf"
    text = main.read_text()
    missing = [line for line in (INCLUDE_LINE, USER_INCLUDE_LINE) if line not in text.splitlines()]
    if missing:
        text = text.rstrip("\n") + "\n" + "\n".join(missing) + "\n"
        changed |= _write_if_changed(main, text, owner)
    if changed:
        logger.info("wrote the PostgreSQL configuration in %s", pgdata)
    return changed


def render_user_settings(values: dict[str, str]) -> str:
    """The user's parameters, one per line; each value was checked against its rule."""
    lines = ["# Written by Cellar from the instance's configuration group."]
    lines += [f"{name} = {_quote(value)}" for name, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def write_user_config(pgdata: Path, values: dict[str, str], owner: OsUser) -> bool:
    """Write the user's parameters; True if the file changed."""
    return _write_if_changed(pgdata / USER_FILE, render_user_settings(values), owner)
