"""Backups, restores and consistency checks of one Redis server.

Use :class:`RedisBackups` for anything that reads or writes a whole snapshot. A backup is
a tar stream of two members: ``dump.rdb``, a fresh BGSAVE snapshot taken while writes go
on (Redis forks), and ``users.acl``, the users' ACL rules with their hashed passwords
(the agent's own user and ``default`` left out). A restore unpacks both into a fresh data
directory; the restored ``prepare`` loads the RDB with the append-only file off, turns it
on once loaded (:meth:`RedisBackups.enable_aof`) and recreates the users
(:meth:`RedisBackups.recreate_users`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

from cellar.errors import InvalidInput
from cellar.names import check_identifier
from guestagent import safe_files
from guestagent.engines.messages import CHUNK_BYTES, BackupDone, BackupPiece, ConsistencyReport
from guestagent.engines.os_user import OsUser
from guestagent.engines.redis_admin import RESERVED_USERS, RedisAdmin
from guestagent.engines.redis_wire import Reply
from guestagent.engines.server_process import run_tool
from guestagent.errors import EngineError

logger = logging.getLogger(__name__)

FORMAT = "tar"
RDB_MEMBER = "dump.rdb"
ACL_MEMBER = "users.acl"
RDB_FILE = "dump.rdb"  # Redis's own dbfilename, which Cellar leaves as it is
AOF_DIR = "appendonlydir"
RESTORED_USERS = ".cellar-restored-users.acl"
RESTORED_MARKER = ".cellar-restored"
SNAPSHOT_PREFIX = "cellar-snapshot-"
ACL_MAX_BYTES = 1024 * 1024
WAIT_TIMEOUT = 3600.0  # a BGSAVE or an AOF rewrite of a large data set takes minutes
CHECK_TIMEOUT = 3600.0
FIRST_POLL = 0.01
POLL_EVERY = 0.2
DETAIL_CHARS = 400
NUL = b"\0"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """An RDB file of one finished BGSAVE, hard-linked aside so no later save changes it."""

    path: Path
    checkpoint: str  # the save's LASTSAVE time, in unix seconds


def _text(reply: Reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _poll(pause: float) -> float:
    time.sleep(pause)
    return min(POLL_EVERY, pause * 2)


def acl_rules(line: str) -> tuple[str, list[str]]:
    """The user name and the ACL SETUSER rules of one ``user ...`` line of the backup.

    A selector (``(~k* +get)``) stays one rule. InvalidInput for a malformed line, a
    reserved name or a user without a password.
    """
    words = line.split()
    if len(words) < 2 or words[0] != "user":
        raise InvalidInput("the backup's user list is malformed")
    name = check_identifier("user", words[1], RESERVED_USERS)
    rules: list[str] = []
    selector: list[str] = []
    for word in words[2:]:
        if selector or word.startswith("("):
            selector.append(word)
            if word.endswith(")"):
                rules.append(" ".join(selector))
                selector = []
        else:
            rules.append(word)
    if selector:
        raise InvalidInput(f"the rules of user {name} in the backup are malformed")
    if "nopass" in rules:
        raise InvalidInput(f"user {name} in the backup has no password")
    return name, rules


def tar_stream(members: Iterable[tuple[str, IO[bytes], int]]) -> Iterator[bytes]:
    """A tar archive of ``(name, file, size)`` members, in pieces of at most CHUNK_BYTES.

    Each file is read in pieces as the archive is consumed, never whole; a piece read is
    passed on as it is (headers and padding go as pieces of their own), so no byte is
    copied twice.
    """
    written = 0
    for name, handle, size in members:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(time.time())
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        yield header
        written += len(header)
        remaining = size
        while remaining:
            data = handle.read(min(CHUNK_BYTES, remaining))
            if not data:
                raise EngineError(f"{name} shrank while it was read")
            yield data
            remaining -= len(data)
        written += size
        if size % tarfile.BLOCKSIZE:
            padding = NUL * (-size % tarfile.BLOCKSIZE)
            yield padding
            written += len(padding)
    end = NUL * (2 * tarfile.BLOCKSIZE)  # the end of the archive
    yield end + NUL * (-(written + len(end)) % tarfile.RECORDSIZE)


class ChunkReader:
    """A file-like view of the restore's chunks for ``tarfile``; counts what it received."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = bytearray()
        self.received = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self.received += len(chunk)
            self._pending += chunk
        if size < 0:
            size = len(self._pending)
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def drain(self) -> None:
        """Read what follows the archive; InvalidInput unless it is padding."""
        while True:
            if self._pending.strip(NUL):
                raise InvalidInput("the backup holds data after the end of its archive")
            self._pending.clear()
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            self.received += len(chunk)
            self._pending += chunk


def _checked_member(member: tarfile.TarInfo, seen: set[str]) -> str:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(f"the backup holds an unsafe path {member.name!r}")
    name = str(path)
    if name not in (RDB_MEMBER, ACL_MEMBER) or not member.isreg():
        raise InvalidInput(f"the backup holds an unexpected member {member.name!r}")
    if name in seen:
        raise InvalidInput(f"the backup holds {name} twice")
    seen.add(name)
    return name


class RedisBackups:
    """Snapshots of the running server, and restores into a fresh data directory."""

    def __init__(
        self,
        admin: RedisAdmin,
        data_dir: Path,
        redis_dir: Path,
        owner: OsUser,
        check_rdb_binary: Path,
        wait_timeout: float = WAIT_TIMEOUT,
    ) -> None:
        self.admin = admin
        self.data_dir = data_dir
        self.redis_dir = redis_dir
        self.owner = owner
        self.check_rdb_binary = check_rdb_binary
        self.wait_timeout = wait_timeout
        self.restored_users = data_dir / RESTORED_USERS
        self.restored_marker = data_dir / RESTORED_MARKER
        self._snapshots = threading.Lock()  # one BGSAVE-and-link at a time

    def persistence(self) -> dict[str, str]:
        """The ``INFO persistence`` fields, as text."""
        fields = {}
        for line in _text(self.admin.run("INFO", "persistence")).splitlines():
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip()] = value.strip()
        return fields

    # -- snapshots -------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A BGSAVE started now and finished, its RDB linked aside until the block ends."""
        deadline = time.monotonic() + self.wait_timeout
        link = self.redis_dir / f"{SNAPSHOT_PREFIX}{uuid.uuid4().hex}.rdb"
        try:
            with self._snapshots:
                saves = self._start_bgsave(deadline)
                checkpoint = self._link_finished_save(saves, link, deadline)
            yield Snapshot(link, checkpoint)
        finally:
            safe_files.remove(link)

    def _start_bgsave(self, deadline: float) -> int:
        """Start (or schedule) a BGSAVE; returns the save count from before it.

        A BGSAVE already running began before this request: it is waited for, then
        ours starts. SCHEDULE makes Redis run ours after an AOF rewrite in progress.
        """
        pause = FIRST_POLL
        while True:
            info = self.persistence()
            if info.get("rdb_bgsave_in_progress") == "0":
                saves = int(info.get("rdb_saves", "0"))
                try:
                    self.admin.run("BGSAVE", "SCHEDULE")
                    return saves
                except EngineError as exc:
                    if "in progress" not in exc.message:
                        raise
            if time.monotonic() >= deadline:
                raise EngineError("an earlier snapshot did not finish in time")
            pause = _poll(pause)

    def _link_finished_save(self, saves_before: int, link: Path, deadline: float) -> str:
        """Wait until a save started after ``saves_before`` finished, then hard-link its
        file to ``link``; returns its LASTSAVE time.

        LASTSAVE counts in whole seconds, so it is the save counter (``rdb_saves``) that
        tells a new save from the last one. The link is made again if another save
        replaced the file while it was being made.
        """
        pause = FIRST_POLL
        while True:
            info = self.persistence()
            saves = int(info.get("rdb_saves", "0"))
            if saves > saves_before and info.get("rdb_bgsave_in_progress") == "0":
                if info.get("rdb_last_bgsave_status") != "ok":
                    raise EngineError("redis could not save a snapshot (see its log)")
                with safe_files.opened_folder(self.redis_dir) as folder:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(link.name, dir_fd=folder)
                    os.link(
                        RDB_FILE,
                        link.name,
                        src_dir_fd=folder,
                        dst_dir_fd=folder,
                        follow_symlinks=False,
                    )
                after = self.persistence()
                if (
                    after.get("rdb_saves") == str(saves)
                    and after.get("rdb_bgsave_in_progress") == "0"
                ):
                    logger.info("snapshot %d saved", saves)
                    return info.get("rdb_last_save_time", "0")
            if time.monotonic() >= deadline:
                raise EngineError("the snapshot did not finish in time")
            pause = _poll(pause)

    def users(self) -> bytes:
        """The users' ACL rules (hashed passwords), one ``user ...`` line each."""
        reply = self.admin.run("ACL", "LIST")
        lines = [_text(line) for line in reply] if isinstance(reply, list) else []
        kept = [line for line in lines if line.split()[1].lower() not in RESERVED_USERS]
        return "".join(line + "\n" for line in kept).encode("utf-8")

    def stream(self) -> Iterator[BackupPiece]:
        """The backup's tar stream, then its BackupDone; closing it early cleans up."""
        # The snapshot shares dump.rdb's inode until the next save: two links at most.
        with self.snapshot() as snap, safe_files.open_reading(snap.path, links=2) as rdb:
            users = self.users()
            size = os.fstat(rdb.fileno()).st_size
            with io.BytesIO(users) as acl:
                members: list[tuple[str, IO[bytes], int]] = [
                    (RDB_MEMBER, rdb, size),
                    (ACL_MEMBER, acl, len(users)),
                ]
                yield from tar_stream(members)
        logger.info("backup of %d bytes of RDB done (LASTSAVE %s)", size, snap.checkpoint)
        yield BackupDone(checkpoint=snap.checkpoint, format=FORMAT)

    def check(self) -> ConsistencyReport:
        """redis-check-rdb over a snapshot taken now."""
        with self.snapshot() as snap:
            argv = self.owner.command([str(self.check_rdb_binary), str(snap.path)])
            result = run_tool(
                argv,
                "redis-check-rdb",
                CHECK_TIMEOUT,
                capture_output=True,
                cwd=self.redis_dir,
                **self.owner.popen_kwargs(),
            )
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        ok = result.returncode == 0 and "RDB looks OK" in output
        return ConsistencyReport(ok=ok, detail=_summary(output, ok, result.returncode))

    # -- restores --------------------------------------------------------------------

    def restored(self) -> bool:
        """True once a complete backup was unpacked and not yet recovered."""
        return self.restored_marker.exists()

    def restore(self, chunks: Iterator[bytes]) -> int:
        """Unpack a backup's tar stream as it arrives; returns the bytes received.

        The RDB becomes the file the server loads at its next start; the users wait in
        a file of their own for :meth:`recreate_users`.
        """
        self.forget_restore()
        safe_files.remove_tree(self.redis_dir / AOF_DIR, ignore_errors=True)
        reader = ChunkReader(chunks)
        seen: set[str] = set()
        try:
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as archive:
                for member in archive:
                    name = _checked_member(member, seen)
                    source = archive.extractfile(member)
                    assert source is not None  # a regular file
                    with source:
                        if name == RDB_MEMBER:
                            self._unpack_rdb(source)
                        else:
                            self._unpack_users(source, member.size)
        except tarfile.TarError as exc:
            raise InvalidInput(f"the backup is not a readable tar stream: {exc}") from exc
        reader.drain()
        if RDB_MEMBER not in seen:
            raise InvalidInput(f"the backup holds no {RDB_MEMBER}")
        if ACL_MEMBER not in seen:
            self._write_private(self.restored_users, b"")
        marker = json.dumps({"format": FORMAT, "bytes": reader.received}) + "\n"
        self._write_private(self.restored_marker, marker.encode())
        logger.info("restored %d bytes of backup", reader.received)
        return reader.received

    def _unpack_rdb(self, source: IO[bytes]) -> None:
        scratch = f".{RDB_FILE}.restoring"
        target = self.redis_dir / RDB_FILE
        with safe_files.writing(target, self.owner, 0o600, scratch) as out:
            shutil.copyfileobj(source, out, CHUNK_BYTES)

    def _unpack_users(self, source: IO[bytes], size: int) -> None:
        if size > ACL_MAX_BYTES:
            raise InvalidInput("the backup's user list is too large")
        text = source.read().decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                acl_rules(line)
        self._write_private(self.restored_users, text.encode("utf-8"))

    def _write_private(self, path: Path, data: bytes) -> None:
        safe_files.write_file(path, data, self.owner, 0o600, scratch=path.name + ".new")

    def enable_aof(self) -> None:
        """Turn the append-only file on and wait until its first rewrite holds the data.

        Redis 7 starts empty from a missing append-only file, so a restored server
        starts with it off, loads the RDB, then writes the AOF from memory here.
        """
        deadline = time.monotonic() + self.wait_timeout
        rewrites = int(self.persistence().get("aof_rewrites", "0"))
        if self.admin.config_get(["appendonly"])["appendonly"] == "yes":
            rewrites -= 1  # turned on by an earlier attempt: wait for its rewrite only
        else:
            self.admin.config_set({"appendonly": "yes"})
        pause = FIRST_POLL
        while True:
            info = self.persistence()
            if (
                int(info.get("aof_rewrites", "0")) > rewrites
                and info.get("aof_rewrite_in_progress") == "0"
                and info.get("aof_rewrite_scheduled") == "0"
            ):
                if info.get("aof_last_bgrewrite_status") != "ok":
                    raise EngineError("redis could not write its append-only file (see its log)")
                logger.info("append-only file written from the restored data")
                return
            if time.monotonic() >= deadline:
                raise EngineError("the append-only file was not written in time")
            pause = _poll(pause)

    def recreate_users(self) -> int:
        """Create the restored users with their hashed passwords and rights; returns how
        many. Rights on the server itself are never restored (``-@admin`` comes last)."""
        if not self.restored_users.exists():
            return 0
        text = safe_files.read_text(self.restored_users)
        users = [acl_rules(line) for line in text.splitlines() if line]
        for name, rules in users:
            self.admin.run("ACL", "SETUSER", name, "reset", *rules, "-@admin")
        self.admin.run("ACL", "SAVE")
        logger.info("recreated %d restored users", len(users))
        return len(users)

    def forget_restore(self) -> None:
        """Remove what a restore left for ``prepare`` (done once it is recovered)."""
        self.restored_marker.unlink(missing_ok=True)
        self.restored_users.unlink(missing_ok=True)


def _summary(output: str, ok: bool, returncode: int) -> str:
    """A short account of redis-check-rdb's output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if ok:
        counts = [line[len("[info]") :].strip() for line in lines if line.startswith("[info]")]
        detail = "RDB looks OK" + (": " + ", ".join(counts) if counts else "")
    else:
        errors = [line for line in lines if "error" in line.lower()]
        detail = f"redis-check-rdb exited with {returncode}: " + " | ".join((errors or lines)[-3:])
    return detail[:DETAIL_CHARS]
