"""MariaDB backups, restores and checks against real servers and the real mariabackup.

One source server makes a chain (a full backup while another session writes, then two
incrementals); fresh servers restore all of it, or only the full backup.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pymysql
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.mariadb import MariadbEngine
from guestagent.engines.mariadb_backup import summarise_check
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
from guestagent.errors import EngineError, NotPrepared
from tests.unit.guestagent.support import MARIADB_BASEDIR, mariadb_engine

ALICE_PASSWORD = "alice-Pw-4c1d'; --"
SHOP = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("alice", ALICE_PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
FIRST_ROWS = 200
MORE_ROWS = 150
LAST_ROWS = 100


@dataclasses.dataclass
class Backup:
    chunks: list[bytes]
    done: BackupDone


@dataclasses.dataclass
class Chain:
    full: Backup
    first_incremental: Backup
    second_incremental: Backup
    rows_in_full: list[tuple[object, ...]]
    rows_at_second: list[tuple[object, ...]]
    journal_before_full: int  # rows the concurrent writer had committed when the full began
    journal_after_full: int  # ... and when it ended


def login(engine: MariadbEngine, database: str = "shop") -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user="alice",
        password=ALICE_PASSWORD,
        database=database,
        connect_timeout=5,
        autocommit=True,
    )


def query(engine: MariadbEngine, statement: str) -> list[tuple[object, ...]]:
    conn = login(engine)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        conn.close()


def insert_items(engine: MariadbEngine, first: int, count: int) -> None:
    conn = login(engine)
    try:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO items (id, label) VALUES (%s, %s)",
                [(n, f"item {n}") for n in range(first, first + count)],
            )
    finally:
        conn.close()


def all_items(engine: MariadbEngine) -> list[tuple[object, ...]]:
    return query(engine, "SELECT id, label FROM items ORDER BY id")


class JournalWriter:
    """Another session that keeps inserting into ``journal``, one commit per row."""

    def __init__(self, engine: MariadbEngine) -> None:
        self.engine = engine
        self.stop = threading.Event()
        self.committed = 0
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="journal-writer")

    def _run(self) -> None:
        try:
            conn = login(self.engine)
            try:
                with conn.cursor() as cursor:
                    while not self.stop.is_set():
                        cursor.execute(
                            "INSERT INTO journal (id) VALUES (%s)", (self.committed + 1,)
                        )
                        self.committed += 1
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001  (reported by the test, not lost in the thread)
            self.failure = exc

    def __enter__(self) -> JournalWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def take(engine: MariadbEngine, request: BackupRequest) -> Backup:
    pieces = list(engine.backup(request))
    *chunks, done = pieces
    assert isinstance(done, BackupDone)
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    return Backup([bytes(chunk) for chunk in chunks if isinstance(chunk, bytes)], done)


def restore_chain(engine: MariadbEngine, backups: list[Backup]) -> None:
    for position, backup in enumerate(backups):
        start = RestoreStart(
            format=backup.done.format,
            type="full" if position == 0 else "incremental",
            position=position,
        )
        received = engine.restore(start, iter(backup.chunks))
        assert received == sum(len(chunk) for chunk in backup.chunks)


@pytest.fixture(scope="module")
def source() -> Iterator[MariadbEngine]:
    with mariadb_engine() as engine:
        engine.warm_up()
        assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
        conn = login(engine)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(64)) ENGINE=InnoDB"
                )
                cursor.execute("CREATE TABLE journal (id INT PRIMARY KEY) ENGINE=InnoDB")
        finally:
            conn.close()
        insert_items(engine, 1, FIRST_ROWS)
        yield engine


@pytest.fixture(scope="module")
def chain(source: MariadbEngine) -> Chain:
    with JournalWriter(source) as writer:
        while writer.committed < 20 and writer.thread.is_alive():
            threading.Event().wait(0.01)
        before = writer.committed
        full = take(source, BackupRequest(backup_id="full"))
        after = writer.committed
    assert writer.failure is None, writer.failure
    assert after > before  # the writer was never blocked for the whole backup
    rows_in_full = all_items(source)
    insert_items(source, FIRST_ROWS + 1, MORE_ROWS)
    first = take(
        source,
        BackupRequest("inc-1", type="incremental", parent_checkpoint=full.done.checkpoint),
    )
    insert_items(source, FIRST_ROWS + MORE_ROWS + 1, LAST_ROWS)
    second = take(
        source,
        BackupRequest("inc-2", type="incremental", parent_checkpoint=first.done.checkpoint),
    )
    rows_at_second = all_items(source)
    insert_items(source, 10_000, 5)  # after the chain: must not come back
    return Chain(full, first, second, rows_in_full, rows_at_second, before, after)


@pytest.fixture(scope="module")
def restored_chain(chain: Chain) -> Iterator[MariadbEngine]:
    with mariadb_engine() as engine:
        engine.warm_up()  # its early install-db must give way to the restore
        restore_chain(engine, [chain.full, chain.first_incremental, chain.second_incremental])
        assert engine.prepare(PrepareRequest(restored=True, memory_mb=256)) is (
            ServiceStatus.HEALTHY
        )
        yield engine


def test_backups_are_xbstream_in_bounded_chunks_with_growing_checkpoints(chain: Chain) -> None:
    backups = [chain.full, chain.first_incremental, chain.second_incremental]
    for backup in backups:
        assert backup.done.format == "xbstream"
        assert backup.chunks
        assert all(0 < len(chunk) <= CHUNK_BYTES for chunk in backup.chunks)
    checkpoints = [int(backup.done.checkpoint) for backup in backups]
    assert checkpoints == sorted(checkpoints)  # InnoDB's checkpoint: it may not move
    full_size = sum(len(chunk) for chunk in chain.full.chunks)
    assert sum(len(chunk) for chunk in chain.first_incremental.chunks) < full_size


def test_the_whole_chain_restores_exactly_the_rows_of_the_second_incremental(
    chain: Chain, restored_chain: MariadbEngine
) -> None:
    expected = [(n, f"item {n}") for n in range(1, FIRST_ROWS + MORE_ROWS + LAST_ROWS + 1)]
    assert chain.rows_at_second == expected
    assert all_items(restored_chain) == expected


def test_restored_instance_keeps_its_accounts_and_is_consistent(
    restored_chain: MariadbEngine,
) -> None:
    assert query(restored_chain, "SELECT CURRENT_USER()")[0][0] == "alice@%"
    assert [u.name for u in restored_chain.list_users()] == ["alice"]  # the agent's access
    assert [d.name for d in restored_chain.list_databases()] == ["shop"]
    report = restored_chain.check_consistency()
    assert report.ok, report.detail
    assert report.detail.startswith("mariadb-check: ") and report.detail.endswith("tables OK")
    assert restored_chain.status().status is ServiceStatus.HEALTHY
    assert not (restored_chain.data_dir / "restore").exists()
    assert (restored_chain.datadir / "mysql_upgrade_info").exists()


def test_the_full_alone_restores_its_rows_and_a_consistent_journal(chain: Chain) -> None:
    with mariadb_engine() as engine:
        restore_chain(engine, [chain.full])
        with pytest.raises(InvalidInput, match="already restored"):
            engine.restore(RestoreStart("xbstream", "full", 0), iter(chain.full.chunks))
        with pytest.raises(InvalidInput, match="out of order"):
            engine.restore(
                RestoreStart("xbstream", "incremental", 2),
                iter(chain.second_incremental.chunks),
            )
        with pytest.raises(InvalidInput, match="sent as incremental, the stream is full"):
            engine.restore(RestoreStart("xbstream", "incremental", 1), iter(chain.full.chunks))
        assert not (engine.data_dir / "restore" / "1").exists()
        engine.prepare(PrepareRequest(restored=True, databases=(Database("more"),)))
        assert all_items(engine) == chain.rows_in_full
        assert all_items(engine) == [(n, f"item {n}") for n in range(1, FIRST_ROWS + 1)]
        journal = [row[0] for row in query(engine, "SELECT id FROM journal ORDER BY id")]
        assert chain.journal_before_full <= len(journal) <= chain.journal_after_full
        assert journal == list(range(1, len(journal) + 1))  # every commit up to a point
        assert {d.name for d in engine.list_databases()} == {"shop", "more"}
        assert engine.check_consistency().ok


def test_restore_into_a_prepared_instance_is_refused(source: MariadbEngine, chain: Chain) -> None:
    with pytest.raises(EngineError, match="already holds data"):
        source.restore(RestoreStart("xbstream", "full", 0), iter(chain.full.chunks))


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (RestoreStart("tar", "full", 0), "xbstream"),
        (RestoreStart("xbstream", "incremental", 0), "must be 'full'"),
        (RestoreStart("xbstream", "full", 1), "must be 'incremental'"),
        (RestoreStart("xbstream", "incremental", 1), "out of order"),
    ],
)
def test_a_chain_must_start_with_its_full_backup(start: RestoreStart, message: str) -> None:
    with mariadb_engine() as engine:
        with pytest.raises(InvalidInput, match=message):
            engine.restore(start, iter([b"never read"]))
        assert not (engine.data_dir / "restore" / str(start.position)).exists()


def test_a_stream_that_is_no_backup_is_refused_and_can_be_sent_again(chain: Chain) -> None:
    with mariadb_engine() as engine:
        with pytest.raises((EngineError, InvalidInput)):
            engine.restore(RestoreStart("xbstream", "full", 0), iter([b"not an xbstream"]))
        assert not (engine.data_dir / "restore" / "0").exists()
        with pytest.raises(InvalidInput, match="sent as full, the stream is incremental"):
            engine.restore(
                RestoreStart("xbstream", "full", 0), iter(chain.first_incremental.chunks)
            )
        restore_chain(engine, [chain.full])


def test_prepare_restored_with_nothing_restored_fails() -> None:
    with mariadb_engine() as engine:
        with pytest.raises(EngineError, match="nothing was restored"):
            engine.prepare(PrepareRequest(restored=True))
        assert engine.status().status is ServiceStatus.FAILED


def test_closing_a_backup_early_kills_mariabackup_and_leaves_nothing(
    source: MariadbEngine,
) -> None:
    pieces = source.backup(BackupRequest(backup_id="abandoned"))
    assert isinstance(pieces, Generator)
    assert isinstance(next(pieces), bytes)
    assert _children_named("mariabackup")
    pieces.close()
    assert not _children_named("mariabackup")
    assert not list(source.data_dir.glob(".cellar-backup-*"))
    *_, done = source.backup(BackupRequest(backup_id="after"))  # the lock was released
    assert isinstance(done, BackupDone)


def test_incremental_needs_a_numeric_parent_checkpoint(source: MariadbEngine) -> None:
    for parent in ("", "12; rm -rf /", "-5"):
        request = BackupRequest("bad", type="incremental", parent_checkpoint=parent)
        with pytest.raises(InvalidInput, match="checkpoint"):
            source.backup(request)
    future = BackupRequest("bad", type="incremental", parent_checkpoint="9" * 15)
    with pytest.raises(InvalidInput, match="ahead of this server"):
        source.backup(future)
    with pytest.raises(InvalidInput, match="neither"):
        source.backup(BackupRequest("bad", type="differential"))


def test_backup_and_check_need_a_prepared_engine() -> None:
    with mariadb_engine() as engine:
        with pytest.raises(NotPrepared):
            engine.backup(BackupRequest(backup_id="early"))
        with pytest.raises(NotPrepared):
            engine.check_consistency()


def test_check_summary_reports_the_first_problems() -> None:
    output = (
        "shop.items                                         OK\n"
        "shop.broken\n"
        "Error    : Table 'shop.broken' is marked as crashed\n"
        "error    : Corrupt\n"
        "shop.logs\n"
        "note     : The storage engine for the table doesn't support check\n"
    )
    report = summarise_check(output)
    assert not report.ok
    assert report.detail == (
        "mariadb-check: 3 tables, problems: shop.broken: Table 'shop.broken' is marked as"
        " crashed; shop.broken: Corrupt"
    )
    fine = summarise_check("shop.items    OK\nshop.logs\nnote     : no check here\n")
    assert fine.ok and fine.detail == "mariadb-check: 2 tables OK"


def _children_named(name: str) -> list[int]:
    """PIDs of this process's children whose command is ``name``."""
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
        if ppid == os.getpid() and comm == name:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module", autouse=True)
def _tools_installed() -> None:
    for tool in ("mariabackup", "mbstream", "mariadb-check"):
        if shutil.which(tool, path=str(MARIADB_BASEDIR / "bin")) is None:
            pytest.skip(f"{tool} is not installed (package mariadb-backup)")
