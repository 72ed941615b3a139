"""Backup, restore and the consistency check of PostgresEngine, on real PostgreSQL 15 servers.

One prepared source is backed up once (while another connection writes) into a file; the
tests restore that file into fresh engines, whole, cut or damaged.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    CHUNK_BYTES,
    BackupDone,
    BackupRequest,
    Database,
    PrepareRequest,
    RestoreStart,
    ServiceStatus,
    User,
)
from guestagent.engines.postgres import PostgresEngine
from guestagent.errors import EngineError, NotPrepared, Unsupported
from tests.unit.guestagent.support import postgres_engine

PASSWORD = "bob-Backup-pw-31415"
SOURCE = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("bob", PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
ROWS_BEFORE = 500
WRITES_DURING = 3
FULL = RestoreStart(format="tar")


@dataclasses.dataclass(frozen=True)
class Backup:
    """A backup of the source, kept in a file, and what it was made of."""

    path: Path
    chunk_sizes: tuple[int, ...]
    done: BackupDone
    written_during: tuple[str, ...]
    orders_file: str  # the orders table's file, relative to the data directory

    def chunks(self, limit: int | None = None) -> Iterator[bytes]:
        """The backup as a restore receives it, cut after ``limit`` bytes if given."""
        left = self.path.stat().st_size if limit is None else limit
        with self.path.open("rb") as stream:
            while left > 0 and (chunk := stream.read(min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk


def login(engine: PostgresEngine, user: str, password: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=5,
    )


def children_named(name: str) -> list[int]:
    """The pids of this process's children whose command is ``name`` (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == name and ppid == os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        engine.prepare(SOURCE)
        with login(engine, "bob", PASSWORD, "shop") as conn:
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
            conn.execute(
                "INSERT INTO orders (item) SELECT 'before-' || n FROM generate_series(1, %s) n",
                (ROWS_BEFORE,),
            )
        yield engine


@pytest.fixture(scope="module")
def backup(source: PostgresEngine, tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """Back the source up; between the first chunks, another connection commits rows."""
    path = tmp_path_factory.mktemp("backup") / "base.tar"
    sizes: list[int] = []
    done: list[BackupDone] = []
    written: list[str] = []
    with login(source, "bob", PASSWORD, "shop") as writer, path.open("wb") as out:
        writer.autocommit = True
        row = writer.execute("SELECT pg_relation_filepath('orders')").fetchone()
        assert row is not None
        for piece in source.backup(BackupRequest(backup_id="b-1")):
            if isinstance(piece, BackupDone):
                done.append(piece)
                continue
            assert not done, "nothing follows the BackupDone"
            sizes.append(len(piece))
            out.write(piece)
            if len(written) < WRITES_DURING:
                item = f"during-{len(written)}"
                writer.execute("INSERT INTO orders (item) VALUES (%s)", (item,))
                written.append(item)
    assert len(done) == 1
    return Backup(path, tuple(sizes), done[0], tuple(written), str(row[0]))


@pytest.fixture(scope="module")
def restored(backup: Backup) -> Iterator[PostgresEngine]:
    """A new instance (its early initdb running, as the agent starts it) filled from the backup."""
    with postgres_engine() as engine:
        engine.warm_up()
        assert engine.restore(FULL, backup.chunks()) == backup.path.stat().st_size
        assert engine.status().status is ServiceStatus.NEW
        status = engine.prepare(
            PrepareRequest(restored=True, memory_mb=256, databases=(Database("extra"),))
        )
        assert status is ServiceStatus.HEALTHY
        yield engine


@pytest.fixture
def fresh() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        yield engine


def test_backup_is_a_tar_stream_in_bounded_chunks_ending_at_its_lsn(backup: Backup) -> None:
    assert backup.chunk_sizes, "the backup streamed some data"
    assert max(backup.chunk_sizes) <= CHUNK_BYTES
    assert backup.done.format == "tar"
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", backup.done.checkpoint)
    with tarfile.open(backup.path, mode="r|") as archive:
        names = {member.name for member in archive}
    assert {"PG_VERSION", "backup_label", "backup_manifest", "global/pg_control"} <= names
    assert any(name.startswith("pg_wal/0000") for name in names), "the WAL it needs is inside"


def test_writes_kept_working_while_the_backup_ran(source: PostgresEngine, backup: Backup) -> None:
    assert len(backup.written_during) == WRITES_DURING
    with login(source, "bob", PASSWORD, "shop") as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert row == (ROWS_BEFORE + WRITES_DURING,)


def test_restored_instance_has_the_rows_and_the_users_of_the_source(
    restored: PostgresEngine, backup: Backup
) -> None:
    assert restored.status().status is ServiceStatus.HEALTHY
    with login(restored, "bob", PASSWORD, "shop") as conn:
        items = {str(row[0]) for row in conn.execute("SELECT item FROM orders")}
    assert {f"before-{n}" for n in range(1, ROWS_BEFORE + 1)} <= items
    # Committed before the backup ended, so inside it.
    assert set(backup.written_during) <= items
    assert User("bob", databases=("shop",)) in restored.list_users()
    assert {"shop", "extra"} <= {d.name for d in restored.list_databases()}
    assert not (restored.pgdata / "backup_manifest").exists()


def test_restored_instance_is_consistent_and_can_be_backed_up_again(
    restored: PostgresEngine,
) -> None:
    report = restored.check_consistency()
    assert report.ok, report.detail
    assert re.fullmatch(r"pg_amcheck: no corruption in \d+ databases", report.detail)

    pieces = list(restored.backup(BackupRequest(backup_id="b-2")))
    assert isinstance(pieces[-1], BackupDone)


def test_check_consistency_reports_a_damaged_table(restored: PostgresEngine) -> None:
    with login(restored, "bob", PASSWORD, "shop") as conn:
        conn.execute(
            "CREATE TABLE scratch AS"
            " SELECT n, repeat('x', 50) AS pad FROM generate_series(1, 100) n"
        )
        row = conn.execute("SELECT pg_relation_filepath('scratch')").fetchone()
        conn.commit()
    assert row is not None
    restored.stop()
    table = restored.pgdata / str(row[0])
    with table.open("r+b") as data:
        data.seek(0)
        data.write(b"\xa5" * 8192)
    restored.start()
    try:
        report = restored.check_consistency()
        assert not report.ok
        assert report.detail.startswith("pg_amcheck (exit ")
        assert "scratch" in report.detail or "block 0" in report.detail
    finally:
        with login(restored, "bob", PASSWORD, "shop") as conn:
            conn.execute("DROP TABLE scratch")
    assert restored.check_consistency().ok


def test_a_damaged_data_file_is_caught_before_the_server_starts_on_it(
    fresh: PostgresEngine, backup: Backup
) -> None:
    fresh.restore(FULL, backup.chunks())
    with (fresh.pgdata / backup.orders_file).open("r+b") as data:
        data.seek(100)
        data.write(b"\x00\xff\x00\xff")

    with pytest.raises(EngineError, match=r"the restored backup is damaged: .*checksum"):
        fresh.prepare(PrepareRequest(restored=True))

    assert not fresh.process.running()
    assert fresh.status().status is ServiceStatus.FAILED


def test_a_cut_stream_is_refused_and_leaves_the_instance_new(
    fresh: PostgresEngine, backup: Backup
) -> None:
    with pytest.raises(InvalidInput, match="not a whole tar archive"):
        fresh.restore(FULL, backup.chunks(limit=backup.path.stat().st_size // 2))

    assert not fresh.pgdata.exists()
    assert fresh.status().status is ServiceStatus.NEW
    with pytest.raises(EngineError, match="nothing was restored"):
        fresh.prepare(PrepareRequest(restored=True))


def test_a_stream_without_its_manifest_is_incomplete(fresh: PostgresEngine, backup: Backup) -> None:
    with tarfile.open(backup.path, mode="r|") as archive:
        manifest = next(m.offset for m in archive if m.name == "backup_manifest")
    end_of_archive = [b"\0" * 1024]

    with pytest.raises(InvalidInput, match="incomplete: it lacks backup_manifest"):
        fresh.restore(FULL, iter([*backup.chunks(limit=manifest), *end_of_archive]))

    assert not fresh.pgdata.exists()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escaped", tarfile.REGTYPE),
        ("/tmp/escaped", tarfile.REGTYPE),
        ("base/escaped", tarfile.SYMTYPE),
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_members_that_could_leave_the_data_directory_are_refused(
    fresh: PostgresEngine, name: str, kind: bytes
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("PG_VERSION"), io.BytesIO(b""))
        member = tarfile.TarInfo(name)
        member.type = kind
        member.linkname = "/tmp" if kind == tarfile.SYMTYPE else ""
        archive.addfile(member, io.BytesIO(b""))

    with pytest.raises(InvalidInput, match=r"outside its data directory|not a plain file"):
        fresh.restore(FULL, iter([buffer.getvalue()]))

    assert not (fresh.data_dir.parent / "escaped").exists()
    assert not (fresh.data_dir / "escaped").exists()
    assert not fresh.pgdata.exists()


@pytest.mark.parametrize(
    ("start", "error"),
    [
        (RestoreStart(format="xbstream"), Unsupported),
        (RestoreStart(format="tar", type="incremental", position=1), Unsupported),
        (RestoreStart(format="tar", position=2), InvalidInput),
    ],
)
def test_restore_takes_one_full_tar_backup(
    fresh: PostgresEngine, start: RestoreStart, error: type[Exception]
) -> None:
    with pytest.raises(error):
        fresh.restore(start, iter([b"never read"]))


def test_restore_into_a_prepared_instance_is_refused(source: PostgresEngine) -> None:
    with pytest.raises(EngineError, match="already holds data: restore needs a new instance"):
        source.restore(FULL, iter([b"never read"]))
    assert source.status().status is ServiceStatus.HEALTHY


def test_incremental_backups_are_unsupported(source: PostgresEngine) -> None:
    with pytest.raises(Unsupported, match="need WAL archiving"):
        source.backup(BackupRequest(backup_id="b-3", type="incremental", parent_checkpoint="0/1"))


def test_backup_and_check_need_a_prepared_instance(fresh: PostgresEngine) -> None:
    with pytest.raises(NotPrepared):
        fresh.backup(BackupRequest(backup_id="b-4"))
    with pytest.raises(NotPrepared):
        fresh.check_consistency()


def test_an_abandoned_backup_kills_and_reaps_pg_basebackup(source: PostgresEngine) -> None:
    pieces = source.backup(BackupRequest(backup_id="b-5"))
    first = next(pieces)
    assert isinstance(first, bytes) and 0 < len(first) <= CHUNK_BYTES
    assert len(children_named("pg_basebackup")) == 1

    pieces.close()  # what gRPC does when the caller cancels

    assert children_named("pg_basebackup") == []
    assert isinstance(list(source.backup(BackupRequest(backup_id="b-6")))[-1], BackupDone)


def test_a_failing_pg_basebackup_gives_the_end_of_its_errors(source: PostgresEngine) -> None:
    source.stop()
    try:
        with pytest.raises(EngineError, match=r"pg_basebackup failed \(exit 1\): .*connection"):
            list(source.backup(BackupRequest(backup_id="b-7")))
    finally:
        source.start()
