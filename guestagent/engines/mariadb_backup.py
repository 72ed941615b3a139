"""Physical backups of a MariaDB server with mariabackup, their way back, and checks.

Use :class:`MariadbBackups` for everything that reads or writes a backup stream:
``stream`` runs ``mariabackup --backup --stream=xbstream`` against the running server,
``unpack`` feeds one backup of a chain to ``mbstream -x`` in ``<data_dir>/restore/<n>``,
``recover`` applies the chain with ``mariabackup --prepare`` and moves it into the
server's data directory (keeping the binary log position where the chain ends in
``restore/xtrabackup_binlog_info``), ``check`` runs ``mariadb-check``. The tools reach the server
over its socket as the agent's account (``unix_socket``: no password anywhere); what
reads or writes the engine's files runs as the engine's OS user. Bytes always flow
through pipes in pieces, never a whole backup in memory.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cellar.errors import InvalidInput
from guestagent import safe_files
from guestagent.engines.mariadb_process import INSTALLED_FILE, MariadbProcess, admin_account
from guestagent.engines.messages import (
    BackupDone,
    BackupPiece,
    BackupRequest,
    ConsistencyReport,
    RestoreStart,
    pipe_chunks,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import run_tool
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

FORMAT = "xbstream"
STAGING_DIR = "restore"  # under the engine's data_dir, one folder per position
CHECKPOINTS_FILE = "xtrabackup_checkpoints"
INFO_FILE = "xtrabackup_info"
BINLOG_INFO_FILE = "xtrabackup_binlog_info"  # the binary log position the backup ends at
DONE_SUFFIX = ".done"  # restore/<n>.done: position n was unpacked completely
APPLIED_SUFFIX = ".applied"  # restore/<n>.applied: position n was prepared into restore/0
LSN = re.compile(r"[0-9]{1,20}")
SERVER_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+-MariaDB")
CHECK_MESSAGE = re.compile(r"(note|info|warning|error|status)\s*:\s*(.*)", re.IGNORECASE)
STDERR_TAIL_BYTES = 4096
PREPARE_TIMEOUT = 4 * 3600.0
CHECK_TIMEOUT = 3600.0
REAP_TIMEOUT = 10.0


class MariadbBackups:
    """Backup, restore and consistency check of the server run by ``process``."""

    def __init__(
        self, process: MariadbProcess, data_dir: Path, defaults_file: Path, owner: OsUser
    ) -> None:
        self.process = process
        self.data_dir = data_dir
        self.defaults_file = defaults_file
        self.owner = owner
        self.staging = data_dir / STAGING_DIR
        self._running = threading.Lock()  # one backup at a time

    def tool(self, name: str) -> str:
        return str(self.process.basedir / "bin" / name)

    # Backup

    def stream(self, request: BackupRequest) -> Iterator[BackupPiece]:
        """The backup's bytes in pieces of at most ``CHUNK_BYTES``, then its ``BackupDone``.

        Closing the generator early kills mariabackup; nothing is left behind.
        """
        parent = checked_parent(request)
        if not self._running.acquire(blocking=False):
            raise EngineError("a backup is already running on this instance")
        work = Path(tempfile.mkdtemp(prefix=".cellar-backup-", dir=self.data_dir))
        try:
            argv = [
                self.tool("mariabackup"),
                f"--defaults-file={self.defaults_file}",
                "--backup",
                f"--stream={FORMAT}",
                f"--socket={self.process.socket}",
                f"--user={admin_account()}",
                f"--target-dir={work / 'target'}",
                f"--extra-lsndir={work / 'lsn'}",
                f"--tmpdir={work}",
            ]
            if parent:
                argv.append(f"--incremental-lsn={parent}")
            started = time.monotonic()
            sent = 0
            with tempfile.TemporaryFile() as errors:
                child = spawn_tool(argv, errors, stdout=subprocess.PIPE, cwd=work)
                try:
                    assert child.stdout is not None
                    for chunk in pipe_chunks(child.stdout):
                        sent += len(chunk)
                        yield chunk
                    code = child.wait()
                finally:
                    end_tool(child, "mariabackup")
                if code != 0:
                    raise EngineError(f"mariabackup failed (exit {code}): {stderr_tail(errors)}")
            checkpoint = read_checkpoints(work / "lsn", self.data_dir).get("to_lsn", "")
            if not LSN.fullmatch(checkpoint):
                raise EngineError("mariabackup wrote no checkpoint for this backup")
        finally:
            safe_files.remove_tree(work, ignore_errors=True)
            self._running.release()
        elapsed = time.monotonic() - started
        logger.info(
            "%s backup %s: %d bytes in %.1f s, up to LSN %s",
            request.type,
            request.backup_id,
            sent,
            elapsed,
            checkpoint,
        )
        yield BackupDone(checkpoint=checkpoint, format=FORMAT)

    # Restore

    def staged(self) -> bool:
        """True once a restore has begun on this instance (until ``clear_staging``)."""
        return self.staging.exists()

    def positions(self) -> list[int]:
        """The positions of the chain unpacked completely, in order."""
        if not self.staging.is_dir():
            return []
        done = []
        for path in self.staging.iterdir():
            stem = path.name.removesuffix(DONE_SUFFIX)
            if path.name.endswith(DONE_SUFFIX) and stem.isdigit():
                done.append(int(stem))
        return sorted(done)

    def unpack(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        """Unpack one backup of the chain into ``restore/<position>``; the bytes read."""
        position = self._checked_position(start)
        target = self.staging / str(position)
        self._make_staging(target)
        received = 0
        started = time.monotonic()
        argv = [self.tool("mbstream"), "-x", "-C", str(target)]
        try:
            with tempfile.TemporaryFile() as errors:
                child = spawn_tool(
                    self.owner.command(argv),
                    errors,
                    stdin=subprocess.PIPE,
                    cwd=target,
                    env=self.owner.environment(),
                )
                try:
                    received = _feed(child, chunks)
                    code = child.wait()
                finally:
                    end_tool(child, "mbstream")
                if code != 0:
                    raise EngineError(f"mbstream failed (exit {code}): {stderr_tail(errors)}")
            self._check_unpacked(start, position, target)
        except BaseException:
            safe_files.remove_tree(target, ignore_errors=True)
            raise
        safe_files.touch(self.staging / f"{position}{DONE_SUFFIX}")
        logger.info(
            "restored %s backup at position %d: %d bytes in %.1f s",
            start.type,
            position,
            received,
            time.monotonic() - started,
        )
        return received

    def _checked_position(self, start: RestoreStart) -> int:
        if start.format != FORMAT:
            raise InvalidInput(f"MariaDB restores {FORMAT} streams, not {start.format!r}")
        position = start.position
        expected_type = "full" if position == 0 else "incremental"
        if position < 0 or start.type != expected_type:
            raise InvalidInput(
                f"position {position} of a chain must be {expected_type!r}: the full backup "
                "at 0, then each incremental in order"
            )
        done = self.positions()
        if position in done:
            raise InvalidInput(f"position {position} of the chain was already restored")
        following = len(done)
        if done != list(range(following)) or position != following:
            raise InvalidInput(f"position {position} is out of order: expected {following}")
        return position

    def _make_staging(self, target: Path) -> None:
        for folder in (self.data_dir, self.staging):
            safe_files.make_dir(folder, self.owner)
        if target.exists():
            logger.warning("removing %s left by an interrupted restore", target)
            safe_files.remove_tree(target)
        safe_files.make_dir(target, self.owner, mode=0o700, exist_ok=False)

    def _check_unpacked(self, start: RestoreStart, position: int, target: Path) -> None:
        """The stream held a backup of the expected type, following the previous one."""
        checkpoints = read_checkpoints(target, self.data_dir)
        kind = checkpoints.get("backup_type", "")
        if not kind:
            raise InvalidInput("the stream holds no mariabackup backup")
        actual = "incremental" if kind == "incremental" else "full"
        if actual != start.type:
            raise InvalidInput(
                f"position {position} was sent as {start.type}, the stream is {actual}"
            )
        if position > 0:
            previous = read_checkpoints(self.staging / str(position - 1), self.data_dir)
            if checkpoints.get("from_lsn") != previous.get("to_lsn"):
                raise InvalidInput(
                    f"the incremental at position {position} does not follow position "
                    f"{position - 1} (it starts at LSN {checkpoints.get('from_lsn')}, "
                    f"the previous ends at {previous.get('to_lsn')})"
                )

    def recover(self, memory_mb: int) -> None:
        """Apply the unpacked chain and make it the server's data directory.

        Resumable: each applied position is recorded, and once ``restore/0`` has moved
        into the data directory there is nothing left to do.
        """
        full = self.staging / "0"
        if not full.is_dir():
            if self.process.initialized():
                return  # moved into place by an earlier, interrupted prepare
            raise EngineError("nothing was restored: restore a full backup first")
        positions = self.positions()
        if not positions or positions != list(range(len(positions))):
            raise EngineError("the restored chain is incomplete: restore a full backup first")
        for position in positions:
            marker = self.staging / f"{position}{APPLIED_SUFFIX}"
            if marker.exists():
                continue
            self._apply(full, position, memory_mb)
            safe_files.touch(marker)
        self._keep_binlog_info(positions[-1])
        _write_installed(full, self.data_dir)
        safe_files.own_tree(full, self.owner)
        datadir = self.process.datadir
        self.process.stop()  # a server left running by a failed prepare
        if datadir.exists():
            safe_files.remove_tree(datadir)
        safe_files.move(full, datadir)
        logger.info("the restored data (%d backups) is now in %s", len(positions), datadir)

    def _keep_binlog_info(self, last: int) -> None:
        """Copy where the chain's last backup ends in the binary log to ``restore/``, before
        the data moves: the archive's replay starts there."""
        source = self.staging / str(last) / BINLOG_INFO_FILE
        try:
            data = safe_files.read_bytes(source, trusted=self.data_dir)
        except FileNotFoundError:
            logger.warning("backup %d records no binary log position", last)
            return
        safe_files.write_file(self.binlog_info, data, None, mode=0o644)

    @property
    def binlog_info(self) -> Path:
        """Where the binary log position of the recovered chain is kept until replayed."""
        return self.staging / BINLOG_INFO_FILE

    def _apply(self, full: Path, position: int, memory_mb: int) -> None:
        argv = [
            self.tool("mariabackup"),
            "--no-defaults",
            "--prepare",
            f"--target-dir={full}",
            f"--use-memory={max(64, memory_mb // 2)}M",
        ]
        if position:
            argv.append(f"--incremental-dir={self.staging / str(position)}")
        started = time.monotonic()
        with tempfile.TemporaryFile() as errors:
            result = run_tool(
                self.owner.command(argv),
                "mariabackup --prepare",
                PREPARE_TIMEOUT,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=full,
                env=self.owner.environment(),
            )
            if result.returncode != 0:
                raise EngineError(
                    f"mariabackup --prepare of position {position} failed "
                    f"(exit {result.returncode}): {stderr_tail(errors)}"
                )
        logger.info("prepared restored position %d in %.1f s", position, time.monotonic() - started)

    def clear_staging(self) -> None:
        safe_files.remove_tree(self.staging, ignore_errors=True)

    # Consistency

    def check(self) -> ConsistencyReport:
        """``mariadb-check --all-databases --check`` over the socket, summarised."""
        argv = [
            self.tool("mariadb-check"),
            "--no-defaults",
            f"--socket={self.process.socket}",
            f"--user={admin_account()}",
            "--all-databases",
            "--check",
        ]
        result = run_tool(argv, "mariadb-check", CHECK_TIMEOUT, capture_output=True)
        report = summarise_check(result.stdout.decode("utf-8", "replace"))
        if result.returncode != 0:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = " | ".join(lines[-3:]) or report.detail
            return ConsistencyReport(
                ok=False, detail=f"mariadb-check failed (exit {result.returncode}): {detail}"
            )
        return report


def checked_parent(request: BackupRequest) -> str:
    """The LSN an incremental starts from ("" for a full backup), or InvalidInput."""
    if request.type == "full":
        return ""
    if request.type != "incremental":
        raise InvalidInput(f"backup type {request.type!r} is neither 'full' nor 'incremental'")
    if not LSN.fullmatch(request.parent_checkpoint):
        raise InvalidInput("an incremental backup needs its parent's checkpoint (an LSN)")
    return request.parent_checkpoint


def read_checkpoints(folder: Path, trusted: Path | None = None) -> dict[str, str]:
    """The ``key = value`` pairs of ``xtrabackup_checkpoints`` in ``folder`` (none if absent);
    ``trusted`` as in ``safe_files``."""
    try:
        text = safe_files.read_text(folder / CHECKPOINTS_FILE, trusted)
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def summarise_check(output: str) -> ConsistencyReport:
    """What ``mariadb-check`` printed, as ok (no table in error) and a short sentence."""
    tables: list[str] = []
    problems: list[str] = []
    current = ""
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        message = CHECK_MESSAGE.fullmatch(line)
        if message is None:
            name, _, status = line.partition(" ")
            current = name
            tables.append(name)
            status = status.strip()
            if status and status != "OK":
                problems.append(f"{name}: {status}")
            continue
        level, text = message.group(1).lower(), message.group(2).strip()
        if level == "error" or (level == "status" and text != "OK"):
            problems.append(f"{current}: {text}")
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return ConsistencyReport(
            ok=False, detail=f"mariadb-check: {len(tables)} tables, problems: {shown}{more}"
        )
    return ConsistencyReport(ok=True, detail=f"mariadb-check: {len(tables)} tables OK")


def spawn_tool(
    argv: list[str],
    errors: IO[bytes],
    cwd: Path,
    stdin: int | IO[bytes] = subprocess.DEVNULL,
    stdout: int = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``argv`` in its own session, stderr into ``errors``; EngineError if it cannot run."""
    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=errors,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise EngineError(f"cannot run {Path(argv[0]).name}: {exc.strerror or exc}") from exc


def _feed(child: subprocess.Popen[bytes], chunks: Iterator[bytes]) -> int:
    """Write every chunk to the child's stdin and close it; the bytes read from ``chunks``."""
    assert child.stdin is not None
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            child.stdin.write(chunk)
        child.stdin.close()
    except BrokenPipeError:
        pass  # the child stopped reading: its exit code and stderr say why
    return received


def end_tool(child: subprocess.Popen[bytes], name: str) -> None:
    """Kill ``child`` if it still runs, reap it and close its pipes."""
    if child.poll() is None:
        logger.warning("stopping %s (pid %d) before it finished", name, child.pid)
        try:
            child.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        child.wait(timeout=REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        logger.error("%s (pid %d) did not exit after SIGKILL", name, child.pid)
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except BrokenPipeError:
                pass


def stderr_tail(errors: IO[bytes]) -> str:
    """The last lines a tool wrote to ``errors``."""
    errors.seek(0, os.SEEK_END)
    errors.seek(max(0, errors.tell() - STDERR_TAIL_BYTES))
    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
    picked = [line for line in lines if "error" in line.lower()][-3:] or lines[-3:]
    return " | ".join(line.strip() for line in picked) or "no output"


def _write_installed(folder: Path, trusted: Path) -> None:
    """Record the system tables' version as install-db does (mariabackup leaves it out)."""
    path = folder / INSTALLED_FILE
    if path.exists():
        return
    info = {}
    try:
        for line in safe_files.read_text(folder / INFO_FILE, trusted).splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    for key in ("server_version", "tool_version"):
        found = SERVER_VERSION.match(info.get(key, ""))
        if found:
            safe_files.write_file(path, found.group(0).encode(), None, 0o644, trusted=trusted)
            return
    raise EngineError("the restored backup does not say which MariaDB version made it")
