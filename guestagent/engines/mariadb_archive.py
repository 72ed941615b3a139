"""MariaDB's binary log as Cellar's continuous archive, and its replay after a restore.

Use :class:`MariadbArchive` for the binary log files in ``<data_dir>/binlog``: ``list_closed``
gives the closed ones (``rotate`` first closes the current file if it holds changes),
``fetch`` streams one, ``remove`` purges the oldest once the control plane stored them
(``PURGE BINARY LOGS``, so the server's index stays right). On a new instance ``store``
keeps the files a restore sends in ``<data_dir>/restore-archive``, and ``replay`` rolls
the recovered backup forward: ``mariadb-binlog`` from the backup's binary log position,
piped into the ``mariadb`` client over the socket as the agent's account.

Recovery to a moment is to the second: binary log events carry whole-second timestamps,
so ``restore_time`` is cut to its second and every event of that second or later is left
out (``--stop-datetime``, read in UTC). Without a moment everything is replayed.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pymysql.cursors import Cursor

from cellar.errors import InvalidInput
from guestagent import safe_files
from guestagent.engines.mariadb_admin import MariadbAdmin
from guestagent.engines.mariadb_backup import end_tool, spawn_tool, stderr_tail
from guestagent.engines.mariadb_config import BINLOG_BASENAME
from guestagent.engines.mariadb_process import MariadbProcess, admin_account
from guestagent.engines.messages import CHUNK_BYTES, ArchiveFile
from guestagent.engines.os_user import OsUser
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

FORMAT = "binlog"  # RestoreStart.format of an archive file
RESTORE_DIR = "restore-archive"  # under the engine's data_dir, until replayed
NAME = re.compile(re.escape(BINLOG_BASENAME) + r"\.[0-9]{6}")
PARTIAL_SUFFIX = ".partial"
# What a freshly opened binary log holds before any change is written to it.
HEADER_EVENTS = frozenset({"Format_desc", "Gtid_list", "Binlog_checkpoint", "Start_encryption"})
HEADER_EVENTS_READ = 20
REPLAY_PACKET_BYTES = 1024 * 1024 * 1024  # a replayed statement holds a whole row event group
REPLAY_TIMEOUT = 4 * 3600.0
RESTORE_TIME_CHARS = 64


@dataclasses.dataclass(frozen=True)
class BinlogPosition:
    """A place in the binary log: a file's name and an offset in it."""

    file: str
    position: int


def checked_name(name: str) -> str:
    """``name`` if it is a binary log file's name (``mariadb-bin.000042``), else InvalidInput."""
    if not NAME.fullmatch(name):
        raise InvalidInput(
            f"{name[:80]!r} is not a binary log file name ({BINLOG_BASENAME}.NNNNNN)"
        )
    return name


def checked_restore_time(text: str) -> datetime.datetime | None:
    """The moment to recover to, in UTC (None when empty); InvalidInput unless RFC 3339.

    A moment without an offset is taken as UTC.
    """
    if not text:
        return None
    try:
        if len(text) > RESTORE_TIME_CHARS:
            raise ValueError(text)
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(
            f"restore time {text[:RESTORE_TIME_CHARS]!r} is not an RFC 3339 moment "
            "(such as 2024-05-01T12:30:00Z)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    moment = moment.astimezone(datetime.UTC)
    if moment.year < 2000:
        raise InvalidInput(f"restore time {text!r} is before any binary log")
    return moment


def read_binlog_position(path: Path) -> BinlogPosition | None:
    """The position mariabackup recorded in ``xtrabackup_binlog_info`` (None if absent)."""
    try:
        fields = safe_files.read_text(path).split()
    except FileNotFoundError:
        return None
    if len(fields) < 2 or not fields[1].isdigit():
        raise EngineError(f"{path.name} of the restored backup is not a binary log position")
    return BinlogPosition(checked_name(Path(fields[0]).name), int(fields[1]))


def _number(name: str) -> int:
    return int(name.rpartition(".")[2])


class MariadbArchive:
    """The closed binary logs of the server run by ``process``, and their replay."""

    def __init__(
        self,
        process: MariadbProcess,
        admin: MariadbAdmin,
        binlog_dir: Path,
        data_dir: Path,
        owner: OsUser,
    ) -> None:
        self.process = process
        self.admin = admin
        self.binlog_dir = binlog_dir
        self.restore_dir = data_dir / RESTORE_DIR
        self.owner = owner
        self._lock = threading.Lock()  # one rotation, listing or purge at a time

    def tool(self, name: str) -> str:
        return str(self.process.basedir / "bin" / name)

    def make_folder(self) -> None:
        """Create the binary log's folder for the server's OS user, if missing."""
        safe_files.make_dir(self.binlog_dir, self.owner, mode=0o750)

    def clear(self) -> None:
        """Forget every binary log: the data directory they belong to is being replaced."""
        if self.binlog_dir.exists():
            safe_files.remove_tree(self.binlog_dir)

    # The archive of a running server

    def list_closed(self, rotate: bool) -> list[ArchiveFile]:
        """The closed binary logs still on disk, oldest first."""
        with self._lock, self.admin.connect() as cursor:
            current = _current(cursor)
            if current is None:
                return []  # binary logging is off: nothing to archive
            if rotate and _holds_changes(cursor, current):
                cursor.execute("FLUSH BINARY LOGS")
                logger.info("closed binary log %s", current)
            closed = _closed(cursor)
        files = []
        for name in closed:
            try:
                stats = (self.binlog_dir / name).stat()
            except FileNotFoundError:
                logger.warning("binary log %s is listed by the server but not on disk", name)
                continue
            files.append(ArchiveFile(name=name, size=stats.st_size, closed_at=stats.st_mtime))
        return files

    def fetch(self, name: str) -> Iterator[bytes]:
        """The bytes of the closed binary log ``name``, in pieces of at most ``CHUNK_BYTES``."""
        name = checked_name(name)
        with self._lock:
            if self.process.running():
                with self.admin.connect() as cursor:
                    current = _current(cursor)
                if current is not None and _number(name) >= _number(current):
                    raise InvalidInput(f"binary log {name} is still open: rotate it first")
            try:
                handle = safe_files.open_reading(self.binlog_dir / name)
            except FileNotFoundError as exc:
                raise InvalidInput(f"there is no binary log {name} on this instance") from exc
        return _pieces(handle)

    def remove(self, names: tuple[str, ...]) -> int:
        """Purge the oldest closed binary logs among ``names``; how many went.

        Only a run of the oldest files can be purged without leaving a hole in the
        server's index: a named file after an unnamed one stays until that one goes.
        """
        wanted = {checked_name(name) for name in names}
        if not wanted:
            return 0
        with self._lock, self.admin.connect() as cursor:
            current = _current(cursor)
            if current is None:
                return 0
            if current in wanted:
                raise InvalidInput(f"binary log {current} is still open: it cannot be removed")
            listed = _binary_logs(cursor)
            oldest = list(itertools.takewhile(lambda name: name in wanted, listed))
            if not oldest:
                kept = sorted(wanted & set(listed))
                if kept:
                    logger.info("kept %s: older binary logs are not stored yet", kept[0])
                return 0
            following = listed[len(oldest)]  # the current file at the latest: it exists
            cursor.execute("PURGE BINARY LOGS TO %s", (following,))
            remaining = set(_binary_logs(cursor))
        removed = [name for name in oldest if name not in remaining]
        if len(removed) < len(oldest):
            logger.warning("the server kept %d binary logs in use", len(oldest) - len(removed))
        if removed:
            logger.info("purged binary logs %s to %s", removed[0], removed[-1])
        return len(removed)

    # Restore

    def restored(self) -> list[str]:
        """The archive files a restore stored completely, oldest first."""
        if not self.restore_dir.is_dir():
            return []
        names = [path.name for path in self.restore_dir.iterdir() if NAME.fullmatch(path.name)]
        return sorted(names, key=_number)

    def store(self, name: str, chunks: Iterator[bytes]) -> int:
        """Keep one archive file sent by a restore until ``replay``; the bytes read."""
        name = checked_name(name)
        safe_files.make_dir(self.restore_dir, mode=0o700)
        target = self.restore_dir / name
        received = 0
        with safe_files.writing(target, None, 0o644, scratch=name + PARTIAL_SUFFIX) as out:
            for chunk in chunks:
                received += len(chunk)
                out.write(chunk)
        logger.info("restored binary log %s: %d bytes", name, received)
        return received

    def replay(self, start: BinlogPosition | None, stop: datetime.datetime | None) -> None:
        """Apply the stored archive from ``start`` (up to before ``stop``'s second), then
        drop it. The server must run; a replay cut short cannot be resumed."""
        names = self.restored()
        if not names:
            if stop is not None:
                logger.warning("no archive files were restored: recovered to the backup's end")
            return
        if start is None:
            raise EngineError("the restored backup records no binary log position to replay from")
        files = self._files_from(start, names)
        argv = [
            self.tool("mariadb-binlog"),
            "--no-defaults",
            f"--start-position={start.position}",
        ]
        if stop is not None:
            argv.append(f"--stop-datetime={stop:%Y-%m-%d %H:%M:%S}")
        argv += [str(self.restore_dir / name) for name in files]
        started = time.monotonic()
        packet = int(self.admin.variable("max_allowed_packet") or 0) or None
        self.admin.set_global("max_allowed_packet", REPLAY_PACKET_BYTES)
        try:
            self._pipe(argv)
        finally:
            try:
                self.admin.set_global("max_allowed_packet", packet)
            except EngineError as exc:
                logger.warning("max_allowed_packet not set back: %s", exc.message)
        safe_files.remove_tree(self.restore_dir)
        logger.info(
            "replayed %d binary logs from %s:%d%s in %.1f s",
            len(files),
            start.file,
            start.position,
            "" if stop is None else f" up to {stop:%Y-%m-%d %H:%M:%S} UTC",
            time.monotonic() - started,
        )

    def _files_from(self, start: BinlogPosition, names: list[str]) -> list[str]:
        """The stored files from the backup's on; InvalidInput if one is missing."""
        files = [name for name in names if _number(name) >= _number(start.file)]
        if not files or files[0] != start.file:
            raise InvalidInput(
                f"the restored archive lacks {start.file}, where the backup ends in the binary log"
            )
        for before, after in itertools.pairwise(files):
            if _number(after) != _number(before) + 1:
                raise InvalidInput(
                    f"the restored archive lacks the files between {before} and {after}"
                )
        return files

    def _pipe(self, binlog_argv: list[str]) -> None:
        """``mariadb-binlog ... | mariadb`` as the agent's account; EngineError if either fails."""
        client_argv = [
            self.tool("mariadb"),
            "--no-defaults",
            f"--socket={self.process.socket}",
            f"--user={admin_account()}",
            "--binary-mode",
            "--batch",
            f"--max-allowed-packet={REPLAY_PACKET_BYTES}",
        ]
        env = dict(self.owner.environment(), TZ="UTC")  # --stop-datetime is local time
        with tempfile.TemporaryFile() as reader_errors, tempfile.TemporaryFile() as client_errors:
            reader = spawn_tool(
                binlog_argv, reader_errors, cwd=self.restore_dir, stdout=subprocess.PIPE, env=env
            )
            try:
                assert reader.stdout is not None
                client = spawn_tool(
                    client_argv, client_errors, cwd=self.restore_dir, stdin=reader.stdout, env=env
                )
                reader.stdout.close()  # the client alone reads it: a failing client stops us
                try:
                    client_code = client.wait(timeout=REPLAY_TIMEOUT)
                    reader_code = reader.wait(timeout=REPLAY_TIMEOUT)
                except subprocess.TimeoutExpired as exc:
                    raise EngineError("the binary log replay did not finish in time") from exc
                finally:
                    end_tool(client, "mariadb")
            finally:
                end_tool(reader, "mariadb-binlog")
            if client_code != 0:
                raise EngineError(
                    f"replaying the binary log failed (mariadb exit {client_code}): "
                    f"{stderr_tail(client_errors)}"
                )
            if reader_code != 0:
                raise EngineError(
                    f"mariadb-binlog failed (exit {reader_code}): {stderr_tail(reader_errors)}"
                )


def _current(cursor: Cursor) -> str | None:
    """The binary log the server writes to now (None when binary logging is off)."""
    cursor.execute("SHOW MASTER STATUS")
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def _binary_logs(cursor: Cursor) -> list[str]:
    cursor.execute("SHOW BINARY LOGS")
    return [str(row[0]) for row in cursor.fetchall()]


def _closed(cursor: Cursor) -> list[str]:
    """The listed binary logs before the current one.

    Listed first, current second: a file the server rotates in between counts as closed,
    and a newer file than the current one is never reported.
    """
    listed = _binary_logs(cursor)
    current = _current(cursor)
    if current in listed:
        return listed[: listed.index(current)]
    return listed


def _holds_changes(cursor: Cursor, name: str) -> bool:
    """True if binary log ``name`` holds an event beyond a fresh file's header."""
    cursor.execute(f"SHOW BINLOG EVENTS IN %s LIMIT {HEADER_EVENTS_READ}", (checked_name(name),))
    kinds = [str(row[2]) for row in cursor.fetchall()]
    return any(kind not in HEADER_EVENTS for kind in kinds) or len(kinds) >= HEADER_EVENTS_READ


def _pieces(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
