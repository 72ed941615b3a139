"""MariaDB's option files, as Cellar wants them.

:func:`render_settings` and :func:`render_user_settings` are pure; :func:`write_config` and
:func:`write_user_config` put them next to the data directory and report whether anything
changed. The server reads only Cellar's file (``--defaults-file``), which includes the
user's; the Debian files in ``/etc/mysql`` are never read.

The binary log is always on: its closed files are the continuous archive that Cellar
copies off the instance for point-in-time recovery. It lives in ``<data_dir>/binlog``,
outside the server's data directory, and Cellar removes files itself once stored.

What a member of a replication set decides for itself (its ``server_id``, whether it is
read-only, whether commits wait for a replica) lives in a third file, included before the
user's: ``mariadb_replication`` rewrites it when the member's role changes.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from pathlib import Path

from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.os_user import OsUser, write_if_changed
from guestagent.engines.tls_files import TlsFiles

logger = logging.getLogger(__name__)

SETTINGS_FILE = "cellar.cnf"
USER_FILE = "cellar-user.cnf"
REPLICATION_FILE = "cellar-replication.cnf"
TLS_FILE = "cellar-tls.cnf"
UNASSIGNED_SERVER_ID = 1  # a standalone's: replaced by a random one when it joins a set
RELAY_LOG_BASENAME = "relay-bin"  # in the server's data directory, whatever the host name
SLAVE_NET_TIMEOUT = 10  # seconds without a byte (heartbeats every 5 s) before reconnecting
PID_FILE = "mariadbd.pid"
BINLOG_DIR = "binlog"  # next to the server's data directory
BINLOG_BASENAME = "mariadb-bin"  # files mariadb-bin.000001, ... and mariadb-bin.index
MAX_BINLOG_SIZE = "64M"  # the server closes a file at this size, between rotations
DEFAULT_MEMORY_MB = 512
MIN_BUFFER_POOL_MB = 64
BUFFER_POOL_STEP_MB = 32
MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What Cellar decides about one MariaDB server."""

    datadir: Path
    socket: Path
    port: int
    bind_address: str = "*"
    memory_mb: int = 0
    binlog_dir: Path | None = None  # default: ``binlog`` next to ``datadir``
    tmpdir: Path | None = None  # sorts and temporary tables; None: the server's default
    tls: TlsFiles | None = None  # the engine's certificate; None: no TLS

    @property
    def binlog_base(self) -> Path:
        """The binary log's path without its number (the server's ``log_bin``)."""
        folder = self.binlog_dir or self.datadir.parent / BINLOG_DIR
        return folder / BINLOG_BASENAME


def buffer_pool_mb(memory_mb: int) -> int:
    """Half the flavor's memory for InnoDB's buffer pool, in steps, never below a minimum."""
    memory = memory_mb if memory_mb > 0 else DEFAULT_MEMORY_MB
    half = memory // 2 // BUFFER_POOL_STEP_MB * BUFFER_POOL_STEP_MB
    return max(MIN_BUFFER_POOL_MB, half)


def render_settings(settings: ServerSettings, user_file: Path) -> str:
    """The contents of ``cellar.cnf``; the user's file is included last."""
    lines = [
        "# Written by Cellar's guest agent; changes here are overwritten.",
        "[mariadbd]",
        f"datadir = {settings.datadir}",
        f"socket = {settings.socket}",
        f"pid-file = {settings.datadir / PID_FILE}",
        f"port = {int(settings.port)}",
        f"bind-address = {settings.bind_address}",
        "skip-name-resolve",
        *([f"tmpdir = {settings.tmpdir}"] if settings.tmpdir else []),
        "character-set-server = utf8mb4",
        f"innodb_buffer_pool_size = {buffer_pool_mb(settings.memory_mb)}M",
        # The continuous archive: every commit, durably, in row events; never expired.
        f"log_bin = {settings.binlog_base}",
        f"log_bin_index = {settings.binlog_base}.index",
        "binlog_format = ROW",
        "sync_binlog = 1",
        "expire_logs_days = 0",
        f"max_binlog_size = {MAX_BINLOG_SIZE}",
        # Replication by GTID: a promoted replica has the binary log the others follow.
        "log_slave_updates = ON",
        "gtid_strict_mode = ON",
        f"relay_log = {settings.datadir / RELAY_LOG_BASENAME}",
        f"relay_log_index = {settings.datadir / RELAY_LOG_BASENAME}.index",
        f"slave_net_timeout = {SLAVE_NET_TIMEOUT}",
        "rpl_semi_sync_slave_enabled = ON",  # acknowledges only to a primary that asks
        # Statements may carry password hashes: the server never logs them.
        "general_log = OFF",
        "log_warnings = 2",
        "",
        f"!include {user_file.with_name(TLS_FILE)}",
        f"!include {user_file.with_name(REPLICATION_FILE)}",
        f"!include {user_file}",
        "",
    ]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ReplicationSettings:
    """This member's own part in a replication set, kept in ``cellar-replication.cnf``."""

    server_id: int = UNASSIGNED_SERVER_ID
    read_only: bool = False
    semi_sync: bool = False  # as a primary, a commit waits until a replica has it


def new_server_id() -> int:
    """A random ``server_id`` for a member of a set, never the standalone's."""
    return UNASSIGNED_SERVER_ID + 1 + secrets.randbelow(2**32 - 2 - UNASSIGNED_SERVER_ID)


def render_replication_settings(settings: ReplicationSettings) -> str:
    lines = [
        "# Written by Cellar's guest agent: this member's role in replication.",
        "[mariadbd]",
        f"server_id = {int(settings.server_id)}",
        f"read_only = {'ON' if settings.read_only else 'OFF'}",
        f"rpl_semi_sync_master_enabled = {'ON' if settings.semi_sync else 'OFF'}",
    ]
    return "\n".join(lines) + "\n"


def read_replication_settings(config_dir: Path) -> ReplicationSettings:
    """What :func:`write_replication_config` last wrote (the defaults when nothing)."""
    values = read_user_settings(config_dir / REPLICATION_FILE)
    server_id = values.get("server_id", "")
    return ReplicationSettings(
        server_id=int(server_id) if server_id.isdigit() else UNASSIGNED_SERVER_ID,
        read_only=values.get("read_only") == "ON",
        semi_sync=values.get("rpl_semi_sync_master_enabled") == "ON",
    )


def write_replication_config(
    config_dir: Path, settings: ReplicationSettings, owner: OsUser
) -> bool:
    """Write this member's replication settings; True if the file changed."""
    return write_if_changed(
        config_dir / REPLICATION_FILE, render_replication_settings(settings), owner
    )


def render_user_settings(values: dict[str, str]) -> str:
    """The user's parameters, one per line; each value was checked against its rule."""
    lines = ["# Written by Cellar from the instance's configuration group.", "[mariadbd]"]
    lines += [f"{name} = {value}" for name, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def read_user_settings(path: Path) -> dict[str, str]:
    """The parameters a user file written by :func:`render_user_settings` holds."""
    try:
        text = safe_files.read_text(path)
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def write_config(config_dir: Path, settings: ServerSettings, owner: OsUser) -> bool:
    """Write Cellar's settings (and empty user and replication files if none); True if
    anything changed."""
    user_file = config_dir / USER_FILE
    changed = False
    if not user_file.exists():
        changed = write_if_changed(user_file, render_user_settings({}), owner)
    if not (config_dir / REPLICATION_FILE).exists():
        changed |= write_replication_config(config_dir, ReplicationSettings(), owner)
    changed |= write_tls(config_dir, settings.tls, owner)
    text = render_settings(settings, user_file)
    changed |= write_if_changed(config_dir / SETTINGS_FILE, text, owner)
    if changed:
        logger.info("wrote the MariaDB configuration in %s", config_dir)
    return changed


def write_tls(config_dir: Path, tls: TlsFiles | None, owner: OsUser) -> bool:
    """Write the TLS settings; True if they changed."""
    return write_if_changed(config_dir / TLS_FILE, tls_settings.mariadb(tls), owner)


def write_user_config(config_dir: Path, values: dict[str, str], owner: OsUser) -> bool:
    """Write the user's parameters; True if the file changed."""
    return write_if_changed(config_dir / USER_FILE, render_user_settings(values), owner)
