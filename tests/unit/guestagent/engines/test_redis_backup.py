"""Backups, restores and consistency checks of RedisEngine, against real redis-servers."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    CHUNK_BYTES,
    BackupDone,
    BackupPiece,
    BackupRequest,
    PrepareRequest,
    RestoreStart,
    ServiceStatus,
    User,
)
from guestagent.engines.redis import RedisEngine
from guestagent.errors import EngineError, NotPrepared, Unsupported
from tests.unit.guestagent.support import redis_engine

ALICE_PASSWORD = "alice-Pw-3c1d 'quoted' >spaces"
SOURCE = PrepareRequest(users=(User("alice", ALICE_PASSWORD),), memory_mb=256)
BIG_VALUES = 3  # random values of CHUNK_BYTES each: the RDB needs several chunks
MIN_WRITES = 50  # what the writer has done before the backup starts


def login(engine: RedisEngine, user: str | None, password: str | None) -> redis.Redis:
    """A client over TCP; commands fail if the login is refused."""
    return redis.Redis(
        host="127.0.0.1",
        port=engine.options.port,
        username=user,
        password=password,
        socket_timeout=10,
        retry=Retry(NoBackoff(), 0),
    )


class Writer(threading.Thread):
    """Writes w:0, w:1, ... in order until stopped; each write is acknowledged."""

    def __init__(self, engine: RedisEngine) -> None:
        super().__init__(name="redis-writer", daemon=True)
        self.engine = engine
        self.count = 0
        self.started_writing = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with login(self.engine, "alice", ALICE_PASSWORD) as client:
                while not self.stopping.is_set():
                    client.set(f"w:{self.count}", self.count)
                    self.count += 1
                    if self.count >= MIN_WRITES:
                        self.started_writing.set()
        except redis.exceptions.RedisError as exc:
            self.error = exc
            self.started_writing.set()

    def written_after(self, count: int) -> None:
        """Wait until the writer got past ``count`` writes (or failed)."""
        while self.count <= count and self.error is None and self.is_alive():
            self.stopping.wait(0.01)


def data_of(pieces: list[BackupPiece]) -> list[bytes]:
    return [piece for piece in pieces if isinstance(piece, bytes)]


def members(chunks: list[bytes]) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as archive:
        found = {}
        for member in archive:
            handle = archive.extractfile(member)
            assert handle is not None
            with handle:
                found[member.name] = handle.read()
        return found


def keys_of(engine: RedisEngine) -> set[bytes]:
    with login(engine, "alice", ALICE_PASSWORD) as client:
        return set(client.scan_iter(count=1000))


def tar_of(files: dict[str, bytes]) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return [buffer.getvalue()]


@pytest.fixture(scope="module")
def source() -> Iterator[RedisEngine]:
    with redis_engine() as engine:
        assert engine.prepare(SOURCE) is ServiceStatus.HEALTHY
        with login(engine, "alice", ALICE_PASSWORD) as client:
            client.set("fruit", "apples")
            client.hset("basket", mapping={"pears": 3, "plums": 7})
            for n in range(BIG_VALUES):
                client.set(f"big:{n}", os.urandom(CHUNK_BYTES))
        yield engine


@pytest.fixture(scope="module")
def backed_up(source: RedisEngine) -> tuple[list[BackupPiece], set[bytes], int, int]:
    """A backup taken while a client writes; the keys from before it, and the writer's
    counts when the backup started and when it ended."""
    before = keys_of(source)
    writer = Writer(source)
    writer.start()
    try:
        writer.started_writing.wait(30)
        started_at = writer.count
        pieces = list(source.backup(BackupRequest("b-1")))
        ended_at = writer.count
        writer.written_after(ended_at)
    finally:
        writer.stopping.set()
        writer.join(30)
    assert writer.error is None
    with login(source, "alice", ALICE_PASSWORD) as client:
        client.set("after", "the backup")
    return pieces, before, started_at, ended_at


def test_a_backup_is_a_tar_of_the_rdb_and_the_users_in_bounded_chunks(
    backed_up: tuple[list[BackupPiece], set[bytes], int, int],
) -> None:
    pieces = backed_up[0]
    chunks = data_of(pieces)

    assert len(chunks) > BIG_VALUES
    assert all(0 < len(chunk) <= CHUNK_BYTES for chunk in chunks)
    assert pieces.count(pieces[-1]) == 1 and isinstance(pieces[-1], BackupDone)
    assert pieces[-1].format == "tar" and pieces[-1].checkpoint.isdigit()
    found = members(chunks)
    assert sorted(found) == ["dump.rdb", "users.acl"]
    assert found["dump.rdb"].startswith(b"REDIS")
    users = found["users.acl"].decode().splitlines()
    assert [line.split()[:2] for line in users] == [["user", "alice"]]
    assert "#" in users[0] and ALICE_PASSWORD not in users[0]


def test_a_backup_leaves_no_snapshot_behind_even_when_closed_early(source: RedisEngine) -> None:
    pieces = source.backup(BackupRequest("b-2"))
    assert isinstance(next(pieces), bytes)
    assert list(source.redis_dir.glob("cellar-snapshot-*"))
    pieces.close()  # type: ignore[attr-defined]

    assert not list(source.redis_dir.glob("cellar-snapshot-*"))


def test_a_backup_waits_for_a_bgsave_already_running(source: RedisEngine) -> None:
    source.admin.run("BGSAVE")
    pieces = list(source.backup(BackupRequest("b-3")))

    assert isinstance(pieces[-1], BackupDone)
    assert not list(source.redis_dir.glob("cellar-snapshot-*"))


def test_restore_brings_back_the_keys_and_users_of_the_backup(
    backed_up: tuple[list[BackupPiece], set[bytes], int, int],
) -> None:
    pieces, before, started_at, ended_at = backed_up
    chunks = data_of(pieces)
    with redis_engine() as target:
        received = target.restore(RestoreStart(format="tar"), iter(chunks))
        assert received == sum(len(chunk) for chunk in chunks)
        assert target.status().status is ServiceStatus.NEW

        assert target.prepare(PrepareRequest(restored=True, memory_mb=256)) is (
            ServiceStatus.HEALTHY
        )

        restored = keys_of(target)
        written = {key for key in restored if key.startswith(b"w:")}
        count = len(written)
        assert started_at <= count <= ended_at
        assert written == {f"w:{n}".encode() for n in range(count)}  # a point in time
        assert restored == before | written  # nothing from after the backup
        assert target.list_users() == [User("alice")]
        with login(target, None, None) as client:
            with pytest.raises(redis.exceptions.AuthenticationError):
                client.ping()
        with login(target, "alice", "not-the-password") as client:
            with pytest.raises(redis.exceptions.AuthenticationError):
                client.ping()
        with login(target, "alice", ALICE_PASSWORD) as client:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.config_get("maxmemory")
        assert target.admin.config_get(["appendonly"]) == {"appendonly": "yes"}
        assert not target.backups.restored()

        target.stop()
        target.start()
        assert keys_of(target) == restored
        report = target.check_consistency()
        assert report.ok, report.detail


def test_check_consistency_reports_a_sound_rdb(source: RedisEngine) -> None:
    report = source.check_consistency()

    assert report.ok is True
    assert report.detail.startswith("RDB looks OK") and "keys read" in report.detail


@pytest.mark.parametrize("name", ["evil.sh", "../dump.rdb", "/etc/passwd", "sub/dump.rdb"])
def test_restore_refuses_unexpected_members(name: str) -> None:
    chunks = tar_of({"dump.rdb": b"REDIS0010", name: b"x"})
    with redis_engine() as target:
        with pytest.raises(InvalidInput, match=r"unexpected|unsafe"):
            target.restore(RestoreStart(format="tar"), iter(chunks))
        assert not target.backups.restored()
        with pytest.raises(EngineError, match="nothing was restored"):
            target.prepare(PrepareRequest(restored=True))


def test_restore_refuses_reserved_users_and_password_free_ones() -> None:
    for line in ["user cellar on #00 ~* +@all", "user eve on nopass ~* +@all"]:
        chunks = tar_of({"dump.rdb": b"REDIS0010", "users.acl": line.encode() + b"\n"})
        with redis_engine() as target, pytest.raises(InvalidInput):
            target.restore(RestoreStart(format="tar"), iter(chunks))


def test_restore_into_a_prepared_instance_is_refused(
    source: RedisEngine, backed_up: tuple[list[BackupPiece], set[bytes], int, int]
) -> None:
    with pytest.raises(EngineError, match="already holds data"):
        source.restore(RestoreStart(format="tar"), iter(data_of(backed_up[0])))
    assert source.status().status is ServiceStatus.HEALTHY


def test_incrementals_and_other_formats_are_unsupported(source: RedisEngine) -> None:
    with pytest.raises(Unsupported, match="no incremental backups"):
        source.backup(BackupRequest("b-4", type="incremental", parent_checkpoint="1"))
    with redis_engine() as target:
        with pytest.raises(Unsupported, match="no incremental backups"):
            target.restore(RestoreStart(format="tar", type="incremental", position=1), iter([]))
        with pytest.raises(Unsupported):
            target.restore(RestoreStart(format="xbstream"), iter([]))


def test_an_unprepared_engine_has_nothing_to_back_up_or_check() -> None:
    with redis_engine() as engine:
        with pytest.raises(NotPrepared):
            engine.backup(BackupRequest("b-5"))
        with pytest.raises(NotPrepared):
            engine.check_consistency()
        with pytest.raises(EngineError, match="nothing was restored"):
            engine.prepare(PrepareRequest(restored=True))
        assert engine.status().status is ServiceStatus.NEW


def test_restore_refuses_a_truncated_or_padded_stream(
    backed_up: tuple[list[BackupPiece], set[bytes], int, int],
) -> None:
    whole = b"".join(data_of(backed_up[0]))
    with redis_engine() as target:
        with pytest.raises(InvalidInput):
            target.restore(RestoreStart(format="tar"), iter([whole[:5000]]))
        with pytest.raises(InvalidInput, match="after the end"):
            target.restore(RestoreStart(format="tar"), iter([whole, b"more"]))
        assert not target.backups.restored()
