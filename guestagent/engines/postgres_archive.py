"""The continuous WAL archive of one PostgreSQL cluster, and recovery from a restored one.

Use :class:`PostgresArchive` from the engine facade. The server's ``archive_command``
(see ``postgres_config.archive_command``) copies every finished WAL segment into the
archive folder; :meth:`~PostgresArchive.files` rotates and lists it,
:meth:`~PostgresArchive.fetch` streams one file, :meth:`~PostgresArchive.remove` deletes
the files the control plane has stored. On a new instance, :meth:`~PostgresArchive.receive`
puts restored files in the restore folder and :meth:`~PostgresArchive.wait_until_promoted`
follows the recovery that replays them. Names are checked before any path is built: only
the names the server itself gives archived files are accepted.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from cellar.errors import InvalidInput
from guestagent import safe_files
from guestagent.engines.messages import CHUNK_BYTES, ArchiveFile
from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_process import PostgresProcess
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

FORMAT = "wal"
# A segment (timeline, log, segment: 8 hex digits each), the partial last segment of a
# timeline left at a promotion, a backup history file, or a timeline history file.
ARCHIVE_NAME = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
ROTATE_WAIT = 10.0  # the most a rotation waits for its segment to be archived
POLL_EVERY = 0.05
MAX_FILE_BYTES = 1024 * 1024 * 1024  # the largest WAL segment PostgreSQL can be built with
RESTORE_SCRATCH_SUFFIX = ".cellar-restoring"
# What the server says when recovery cannot end where it was asked to (PostgreSQL 15).
ARCHIVE_TOO_SHORT = "recovery ended before configured recovery target was reached"
LAST_LINES = 20  # the server's lines from its stop back past the failed recovery's own
TARGET_TOO_EARLY = "requested recovery stop point is before consistent recovery point"


def checked_name(name: str) -> str:
    """``name`` if the archive can hold a file of that name, else InvalidInput."""
    if not ARCHIVE_NAME.fullmatch(name):
        raise InvalidInput(f"{name[:64]!r} is not the name of a WAL archive file")
    return name


def checked_target_time(text: str) -> str:
    """An RFC 3339 moment as the server reads it, in UTC ('' stays ''); InvalidInput for
    anything else. A moment without an offset is taken as UTC."""
    if not text:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"restore time {text[:64]!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(sep=" ")


class PostgresArchive:
    """The archive folder of ``process``'s cluster and the folder a restore fills."""

    def __init__(
        self,
        process: PostgresProcess,
        admin: PostgresAdmin,
        archive_dir: Path,
        restore_dir: Path,
    ) -> None:
        self.process = process
        self.admin = admin
        self.archive_dir = archive_dir
        self.restore_dir = restore_dir
        self._xmax_at_rotation: int | None = None  # the next xid when we last rotated

    @property
    def owner(self) -> OsUser:
        return self.process.owner

    def make_dirs(self) -> None:
        """Create the archive folder, the engine's user's, before the server first runs."""
        _make_dir(self.archive_dir, self.owner)

    def files(self, rotate: bool) -> list[ArchiveFile]:
        """The archived files, by name; ``rotate`` first closes and archives the current
        segment if WAL was written since it began."""
        if rotate:
            self.rotate()
        return _files_in(self.archive_dir)

    def rotate(self) -> str:
        """Close the current segment if it holds WAL and wait until it is archived; the
        closed segment's name, or '' when there was nothing to close.

        Before closing, an empty transaction is committed: the segment then ends with a
        commit stamped now, so a recovery to any moment before this call finds where to
        stop inside the archive (the server only stops at commits).

        Only a change made by a transaction counts: an idle server still writes a little
        WAL of its own (a snapshot record every 15 s), and closing a 16 MB segment for
        that would fill the archive with nothing. No transaction since the last rotation
        shows as an unchanged next transaction id.
        """
        with self.admin.connect() as conn:
            row = conn.execute(
                "SELECT current_setting('archive_mode'),"
                " (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset,"
                " pg_snapshot_xmax(pg_current_snapshot())::text"
            ).fetchone()
            assert row is not None
            mode, offset, xmax = str(row[0]), int(row[1]), int(row[2])
            if mode == "off":
                raise EngineError("WAL archiving is not active yet: it starts at the next restart")
            if offset == 0 or xmax == self._xmax_at_rotation:
                logger.debug("no transaction since the last segment switch: nothing to rotate")
                return ""
            conn.execute("SELECT pg_current_xact_id()")
            row = conn.execute(
                "SELECT pg_walfile_name(pg_switch_wal()),"
                " pg_snapshot_xmax(pg_current_snapshot())::text"
            ).fetchone()
            assert row is not None
            name, self._xmax_at_rotation = str(row[0]), int(row[1])
        self._wait_archived(name, time.monotonic() + ROTATE_WAIT)
        logger.info("rotated the WAL: %s is archived", name)
        return name

    def _wait_archived(self, name: str, deadline: float) -> None:
        path = self.archive_dir / name
        while not path.exists():
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"WAL segment {name} was not archived within {ROTATE_WAIT:.0f} s:"
                    f" {self._last_failure()}"
                )
            time.sleep(POLL_EVERY)

    def _last_failure(self) -> str:
        with self.admin.connect() as conn:
            row = conn.execute(
                "SELECT last_failed_wal, last_failed_time::text FROM pg_stat_archiver"
            ).fetchone()
        if row is None or row[0] is None:
            return "the archiver reports no failure"
        return f"archiving {row[0]} last failed at {row[1]}"

    def fetch(self, name: str) -> Iterator[bytes]:
        """The bytes of one archived file in pieces of at most ``CHUNK_BYTES``; the name and
        the file are checked now, so a bad request fails before any byte goes."""
        path = self.archive_dir / checked_name(name)
        if not path.is_file() or path.is_symlink():
            raise InvalidInput(f"no archive file named {name!r}")
        return _chunks_of(path, name)

    def remove(self, names: Iterable[str]) -> int:
        """Delete the named files (every name is checked first); how many were there."""
        paths = [self.archive_dir / checked_name(name) for name in names]
        removed = 0
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        logger.info("removed %d of %d archive files", removed, len(paths))
        return removed

    def receive(self, name: str, chunks: Iterable[bytes]) -> int:
        """Write one restored archive file into the restore folder; the bytes received."""
        path = self.restore_dir / checked_name(name)
        _make_dir(self.restore_dir, self.owner)
        scratch = name + RESTORE_SCRATCH_SUFFIX
        received = 0
        try:
            with safe_files.writing(path, self.owner, 0o600, scratch=scratch) as out:
                for chunk in chunks:
                    received += len(chunk)
                    if received > MAX_FILE_BYTES:
                        raise InvalidInput(f"archive file {name} is larger than a WAL segment")
                    out.write(chunk)
        except OSError as exc:
            raise EngineError(f"cannot write archive file {name}: {exc.strerror or exc}") from exc
        return received

    def restored_files(self) -> list[str]:
        """The names of the files a restore put in the restore folder."""
        return [f.name for f in _files_in(self.restore_dir)]

    def clear_restored(self) -> None:
        """Remove the restore folder and what it holds."""
        safe_files.remove_tree(self.restore_dir, ignore_errors=True)

    def wait_until_promoted(self, target_time: str, deadline: float) -> None:
        """Wait until the server has replayed the archive and takes writes; EngineError,
        saying why, if it stops instead or ``deadline`` passes."""
        while True:
            if not self.process.running():
                raise self.recovery_failed(target_time)
            try:
                with self.admin.connect() as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
            except EngineError:
                pass  # the server shuts down, or is about to accept connections
            if time.monotonic() >= deadline:
                raise EngineError("the recovery did not finish in time")
            time.sleep(POLL_EVERY)

    def ended_short_of(self, target_time: str) -> bool:
        """Whether the server stopped at the archive's end before ``target_time``, a moment
        already past. The control plane restores only moments its archive covers, so the
        archive holds every commit up to it; the segment that was open at that moment was
        closed before it, and no commit lies between its end and the moment."""
        if not target_time or self.process.running():
            return False
        moment = datetime.datetime.fromisoformat(target_time)
        if moment >= datetime.datetime.now(datetime.UTC):
            return False
        return any(ARCHIVE_TOO_SHORT in line for line in self.process.recent_log()[-LAST_LINES:])

    def recovery_failed(self, target_time: str, cause: str = "") -> EngineError:
        """The error to give when the server stopped during recovery, from its last lines."""
        lines = self.process.recent_log()
        for line in reversed(lines):
            if ARCHIVE_TOO_SHORT in line:
                return EngineError(f"the archive ends before {target_time}: {_message(line)}")
            if TARGET_TOO_EARLY in line:
                return EngineError(f"the backup ends after {target_time}: {_message(line)}")
        last = _message(lines[-1]) if lines else "no log output"
        return EngineError(f"the recovery failed: {cause or last}")


def _message(line: str) -> str:
    """The server's message in a log line, without the line's prefix."""
    for level in ("FATAL:", "PANIC:", "ERROR:", "LOG:"):
        if level in line:
            return line.split(level, 1)[1].strip()
    return line.strip()


def _make_dir(path: Path, owner: OsUser) -> None:
    safe_files.make_dir(path, owner, mode=0o700)


def _files_in(folder: Path) -> list[ArchiveFile]:
    """The finished archive files in ``folder`` (never a scratch copy), by name."""
    files = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not ARCHIVE_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while listed
        files.append(ArchiveFile(name=entry.name, size=stat.st_size, closed_at=stat.st_mtime))
    return sorted(files, key=lambda f: f.name)


def _chunks_of(path: Path, name: str) -> Iterator[bytes]:
    try:
        stream = open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except FileNotFoundError as exc:
        raise InvalidInput(f"no archive file named {name!r}") from exc
    except OSError as exc:
        raise EngineError(f"cannot read archive file {name}: {exc.strerror or exc}") from exc
    with stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk
