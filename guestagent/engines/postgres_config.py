"""PostgreSQL's configuration files, as Cellar wants them.

:func:`render_settings` and :func:`render_hba` are pure (tested on their own);
:func:`write_config` puts them in a data directory and reports whether anything changed,
so a running server is only reloaded when needed. :func:`write_recovery` and
:func:`clear_recovery` add and take away the settings of one point-in-time recovery;
:func:`write_replication` holds the streaming replication settings of either side
(a source's synchronous standbys, or a standby's link to its primary).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from pathlib import Path

from guestagent import safe_files
from guestagent.engines import tls_settings
from guestagent.engines.os_user import OsUser, write_if_changed
from guestagent.engines.tls_files import TlsFiles

logger = logging.getLogger(__name__)

SETTINGS_FILE = "cellar.conf"
USER_FILE = "cellar-user.conf"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
USER_INCLUDE_LINE = f"include_if_exists = '{USER_FILE}'"
RECOVERY_FILE = "cellar-recovery.conf"
RECOVERY_INCLUDE_LINE = f"include_if_exists = '{RECOVERY_FILE}'"
RECOVERY_SIGNAL = "recovery.signal"
REPLICATION_FILE = "cellar-replication.conf"
REPLICATION_INCLUDE_LINE = f"include_if_exists = '{REPLICATION_FILE}'"
STANDBY_SIGNAL = "standby.signal"
TLS_FILE = "cellar-tls.conf"
TLS_INCLUDE_LINE = f"include_if_exists = '{TLS_FILE}'"
ARCHIVE_SCRATCH_SUFFIX = ".cellar-copy"  # a segment being copied into the archive
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
    archive_dir: Path | None = None  # where finished WAL segments go; None: no archiving
    tls: TlsFiles | None = None  # the engine's certificate; None: no TLS


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def archive_command(archive_dir: Path) -> str:
    """A shell command line that copies the finished segment ``%p`` to ``archive_dir/%f``.

    The copy goes to a scratch name, reaches the disk, then is renamed, so the archive
    never holds half a segment. A segment archived before (the server retries after a
    crash) succeeds if the copy there is identical and fails otherwise, so nothing is
    ever overwritten. ``%`` in the path is doubled for the server's own substitution.
    """
    target = shlex.quote(str(archive_dir)).replace("%", "%%") + "/%f"
    scratch = target + ARCHIVE_SCRATCH_SUFFIX
    return (
        f"if test -e {target}; then cmp -s %p {target};"
        f" else cp %p {scratch} && sync {scratch} && mv {scratch} {target}; fi"
    )


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
        # Enough WAL for base backups and the archive (the default, stated).
        "wal_level = replica",
        # pg_rewind needs hint-bit changes in the WAL to turn a former primary into a
        # replica of the new one; like wal_level, it only changes with a restart.
        "wal_log_hints = on",
        # A standby (standby.signal) takes read-only queries and follows its primary onto
        # a new timeline; both only change with a restart, so they are here for everyone
        # (the defaults, stated).
        "hot_standby = on",
        "recovery_target_timeline = 'latest'",
    ]
    if settings.archive_dir is not None:
        # Every finished segment is archived for point-in-time recovery; archive_mode
        # itself only changes with a restart.
        lines += [
            "archive_mode = on",
            f"archive_command = {_quote(archive_command(settings.archive_dir))}",
        ]
    lines.append("")
    return "\n".join(lines)


def render_hba(tls: TlsFiles | None = None) -> str:
    """The contents of ``pg_hba.conf``: trust on the socket (backups too), SCRAM over TCP
    (over TLS alone when the instance requires it)."""
    host = tls_settings.postgres_host_rule(tls).ljust(7)
    return "\n".join(
        [
            "# Written by Cellar's guest agent; changes here are overwritten.",
            "# TYPE  DATABASE  USER  ADDRESS     METHOD",
            "local   all       all               trust",
            "local   replication all             trust",  # pg_basebackup, as the superuser
            f"{host} all       all   0.0.0.0/0   scram-sha-256",
            f"{host} all       all   ::/0        scram-sha-256",
            # Replicas stream with the replication account (only REPLICATION roles may).
            f"{host} replication all 0.0.0.0/0   scram-sha-256",
            f"{host} replication all ::/0        scram-sha-256",
            "",
        ]
    )


def write_hba(pgdata: Path, owner: OsUser, tls: TlsFiles | None = None) -> bool:
    """Write Cellar's access rules alone (an instance prepared by an older agent may lack
    the replication rule); True if the file changed and the server needs a reload."""
    return write_if_changed(pgdata / "pg_hba.conf", render_hba(tls), owner)


def write_tls(pgdata: Path, tls: TlsFiles | None, owner: OsUser) -> bool:
    """Write the TLS settings and the access rules that follow from them; True if either
    changed and the server needs a reload."""
    changed = write_if_changed(pgdata / TLS_FILE, tls_settings.postgres(tls), owner)
    return write_hba(pgdata, owner, tls) or changed


def write_config(pgdata: Path, settings: ServerSettings, owner: OsUser) -> bool:
    """Write Cellar's settings and access rules into ``pgdata``; True if anything changed."""
    changed = write_if_changed(pgdata / SETTINGS_FILE, render_settings(settings), owner)
    changed |= write_tls(pgdata, settings.tls, owner)
    main = pgdata / "postgresql.conf"
    text = safe_files.read_text(main)
    includes = (
        INCLUDE_LINE,
        TLS_INCLUDE_LINE,
        USER_INCLUDE_LINE,
        RECOVERY_INCLUDE_LINE,
        REPLICATION_INCLUDE_LINE,
    )
    missing = [line for line in includes if line not in text.splitlines()]
    if missing:
        text = text.rstrip("\n") + "\n" + "\n".join(missing) + "\n"
        changed |= write_if_changed(main, text, owner)
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
    return write_if_changed(pgdata / USER_FILE, render_user_settings(values), owner)


def render_recovery(restore_dir: Path, target_time: str = "") -> str:
    """The settings of a point-in-time recovery from the segments in ``restore_dir``: up
    to ``target_time`` (a timestamp with its offset) if given, else to the archive's end.

    With ``recovery_target_inclusive = on`` the server stops before the first commit
    *after* the target: a commit at exactly the target time is kept. Reaching the target,
    the server is promoted (a new timeline) and takes writes.
    """
    command = "cp " + shlex.quote(str(restore_dir)).replace("%", "%%") + "/%f %p"
    lines = [
        "# Written by Cellar's guest agent for one recovery; removed once it is done.",
        f"restore_command = {_quote(command)}",
    ]
    if target_time:
        lines += [
            f"recovery_target_time = {_quote(target_time)}",
            "recovery_target_inclusive = on",
            "recovery_target_action = 'promote'",
        ]
    lines.append("")
    return "\n".join(lines)


def write_recovery(pgdata: Path, restore_dir: Path, target_time: str, owner: OsUser) -> None:
    """Make the next start of the server an archive recovery (see :func:`render_recovery`)."""
    write_if_changed(pgdata / RECOVERY_FILE, render_recovery(restore_dir, target_time), owner)
    safe_files.touch(pgdata / RECOVERY_SIGNAL, owner, mode=0o600)
    logger.info("the next start recovers up to %s", target_time or "the end of the archive")


def clear_recovery(pgdata: Path) -> bool:
    """Take the recovery settings away (the server removes ``recovery.signal`` itself when
    it is promoted); True if there were some."""
    return safe_files.remove(pgdata / RECOVERY_FILE)


def render_standby(conninfo: str, slot: str) -> str:
    """The settings of a hot standby streaming from the primary at ``conninfo`` (a libpq
    connection string without a password) through the replication slot ``slot``."""
    return "\n".join(
        [
            "# Written by Cellar's guest agent: this server is a standby (with standby.signal).",
            f"primary_conninfo = {_quote(conninfo)}",
            f"primary_slot_name = {_quote(slot)}",
            "",
        ]
    )


def render_source(synchronous_standby_names: str) -> str:
    """The settings of a primary: which standbys a commit waits for ('' for none)."""
    return "\n".join(
        [
            "# Written by Cellar's guest agent for the replicas of this primary.",
            f"synchronous_standby_names = {_quote(synchronous_standby_names)}",
            "",
        ]
    )


def write_replication(pgdata: Path, text: str, owner: OsUser) -> bool:
    """Make ``text`` (see :func:`render_standby`, :func:`render_source`; '' for neither)
    the replication settings; True if the file changed and the server needs a reload."""
    path = pgdata / REPLICATION_FILE
    if not text:
        return safe_files.remove(path)
    return write_if_changed(path, text, owner)
