"""Physical backups of one PostgreSQL cluster: ``pg_basebackup`` out, a tar stream in.

Use :class:`PostgresBackups` from the engine facade, which checks the engine's state
first. :meth:`~PostgresBackups.stream` pipes ``pg_basebackup``'s tar straight to the
caller, one bounded chunk at a time; :meth:`~PostgresBackups.unpack` writes such a stream
into a data directory as it arrives; :meth:`~PostgresBackups.verify` compares the result
with the backup's manifest before the server first starts on it; :meth:`~PostgresBackups.check`
runs ``pg_amcheck`` over every database. Every tool runs as the engine's OS user, as the
superuser over the socket; only the end of a tool's own output reaches an error message.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Generator, Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from cellar.errors import InvalidInput
from guestagent import safe_files
from guestagent.engines.messages import BackupDone, BackupPiece, ConsistencyReport, pipe_chunks
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_process import OUTPUT_BYTES, SUPERUSER, PostgresProcess
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

FORMAT = "tar"
END_POINT = re.compile(r"write-ahead log end point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+)")
# What a data directory restored from pg_basebackup's tar must hold.
RESTORED_FILES = ("PG_VERSION", "global/pg_control", "backup_label", "backup_manifest")
QUIET = {"PGOPTIONS": "-c client_min_messages=warning"}  # no notices in a tool's output
DETAIL_LINES = 5
VERIFY_TIMEOUT = 3600.0
CHECK_TIMEOUT = 6 * 3600.0


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks; counts the bytes it received."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.received += len(chunk)
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def drain(self) -> int:
        """Read what follows the archive's end; returns how many of those bytes were not zero."""
        stray = len(self._pending) - self._pending.tobytes().count(0)
        self._pending = memoryview(b"")
        for chunk in self._chunks:
            self.received += len(chunk)
            stray += len(chunk) - chunk.count(0)
        return stray


class PostgresBackups:
    """Backs up, restores and checks the cluster that ``process`` runs."""

    def __init__(self, process: PostgresProcess, admin: PostgresAdmin) -> None:
        self.process = process
        self.admin = admin

    def _tool(self, name: str) -> str:
        return str(self.process.bin_dir / name)

    def _server(self) -> list[str]:
        """Connection options of the PostgreSQL tools: the superuser, over the socket."""
        process = self.process
        return ["-h", str(process.socket_dir), "-p", str(process.port), "-U", SUPERUSER, "-w"]

    def stream(self) -> Generator[BackupPiece, None, None]:
        """Run ``pg_basebackup`` and yield its tar in chunks, then the ``BackupDone``.

        Closing the generator early (the reader went away) kills and reaps the tool.
        """
        argv = [
            self._tool("pg_basebackup"),
            *self._server(),
            "-D", "-",
            "-F", "tar",
            "-X", "fetch",
            "--checkpoint=fast",
            "--verbose",
        ]  # fmt: skip
        started = time.monotonic()
        sent = 0
        with tempfile.TemporaryFile() as errors:
            child = self.process.tool(argv, stdout=subprocess.PIPE, stderr=errors)
            assert child.stdout is not None
            try:
                logger.info("backup started (pg_basebackup pid %d)", child.pid)
                for chunk in pipe_chunks(child.stdout):
                    sent += len(chunk)
                    yield chunk
                code = child.wait()
            finally:
                if child.poll() is None:
                    child.kill()
                    logger.warning(
                        "backup abandoned after %d bytes: killed pg_basebackup (pid %d)",
                        sent,
                        child.pid,
                    )
                child.wait()
                child.stdout.close()
            output = _tail(errors)
        if code != 0:
            raise EngineError(f"pg_basebackup failed (exit {code}): {_last_lines(output)}")
        match = END_POINT.search(output)
        checkpoint = match.group(1) if match else self._current_lsn()
        seconds = time.monotonic() - started
        logger.info(
            "backup done: %d bytes in %.1f s (%.0f MB/s), ends at %s",
            sent,
            seconds,
            sent / 1e6 / max(seconds, 1e-3),
            checkpoint,
        )
        yield BackupDone(checkpoint=checkpoint, format=FORMAT)

    def _current_lsn(self) -> str:
        with self.admin.connect() as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        return str(row[0]) if row else ""

    def unpack(self, chunks: Iterable[bytes], target: Path) -> int:
        """Write the tar stream ``chunks`` into the empty directory ``target``, owned by the
        engine's user (directories 0700, files 0600); returns the bytes received.

        Only plain files and directories inside ``target`` are accepted: InvalidInput for
        anything else, and for a stream that is not a whole backup.
        """
        with ChunkReader(chunks) as reader:
            try:
                with tarfile.open(fileobj=reader, mode="r|") as archive:
                    for member in archive:
                        self._extract(archive, member, target)
            except tarfile.TarError as exc:
                raise InvalidInput(f"the backup stream is not a whole tar archive: {exc}") from exc
            if reader.drain():
                raise InvalidInput("the backup stream goes on after the end of its tar archive")
            missing = [name for name in RESTORED_FILES if not (target / name).is_file()]
            if missing:
                raise InvalidInput(
                    f"the backup stream is incomplete: it lacks {', '.join(missing)}"
                )
            return reader.received

    def _extract(self, archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        relative = _safe_path(member.name)
        if member.isdir():
            self._make_dirs(target, relative.parts)
            return
        if not member.isfile() or not relative.parts:
            raise InvalidInput(f"the backup holds {member.name!r}, which is not a plain file")
        self._make_dirs(target, relative.parts[:-1])
        path = target.joinpath(*relative.parts)
        source = archive.extractfile(member)
        assert source is not None
        owner = self.process.owner
        with source, safe_files.create_file(path, owner, 0o600, trusted=target.parent) as out:
            shutil.copyfileobj(source, out)

    def _make_dirs(self, target: Path, parts: tuple[str, ...]) -> None:
        """The folders ``parts`` in ``target``, each 0700 and the engine's, checked on the
        way (the engine's user can write in every one of them)."""
        for depth in range(1, len(parts) + 1):
            path = target.joinpath(*parts[:depth])
            safe_files.make_dir(path, self.process.owner, mode=0o700, trusted=target.parent)

    def verify(self, pgdata: Path) -> None:
        """Compare a restored data directory with its ``backup_manifest`` (sizes, checksums,
        the WAL it needs); EngineError naming the first difference."""
        argv = [self._tool("pg_verifybackup"), "--quiet", str(pgdata)]
        code, output = self.process.run_tool(argv, VERIFY_TIMEOUT)
        if code != 0:
            raise EngineError(f"the restored backup is damaged: {_first_lines(output, 2)}")
        logger.info("the restored backup matches its manifest")

    def check(self) -> ConsistencyReport:
        """Run ``pg_amcheck`` on the tables and indexes of every database."""
        with self.admin.connect() as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datallowconn").fetchone()
        databases = int(row[0]) if row else 0
        argv = [
            self._tool("pg_amcheck"),
            *self._server(),
            "--all",
            "--install-missing",
            "--heapallindexed",
        ]
        started = time.monotonic()
        # Corruption is reported on stdout; notices (such as "amcheck already exists") are muted.
        code, output = self.process.run_tool(argv, CHECK_TIMEOUT, QUIET)
        logger.info(
            "pg_amcheck exited %d in %.1f s over %d databases",
            code,
            time.monotonic() - started,
            databases,
        )
        if code == 0 and not output.strip():
            return ConsistencyReport(
                ok=True, detail=f"pg_amcheck: no corruption in {databases} databases"
            )
        return ConsistencyReport(
            ok=False, detail=f"pg_amcheck (exit {code}): {_first_lines(output, DETAIL_LINES)}"
        )


def _safe_path(name: str) -> PurePosixPath:
    """``name`` as a path inside the target directory; InvalidInput if it could leave it."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise InvalidInput(f"the backup holds {name!r}, a path outside its data directory")
    return path


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - OUTPUT_BYTES))
    return stream.read().decode("utf-8", "replace")


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no output"


def _first_lines(text: str, count: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "no output"
