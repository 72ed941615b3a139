"""MariaDB's binary log archive and point-in-time recovery, against real servers.

One source server closes a binary log, is backed up, commits row A and closes that log,
then (a moment T later) commits row B and closes the log again. Fresh servers restore the
backup and the archive files: up to T they hold A only, without a moment A and B. Sleeps
only separate commit times: binary log timestamps have one-second resolution.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pwd
import shutil
import time
from collections.abc import Iterator

import pymysql
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.mariadb import MariadbEngine
from guestagent.engines.mariadb_archive import checked_restore_time
from guestagent.engines.messages import (
    CHUNK_BYTES,
    ArchiveFile,
    BackupDone,
    BackupRequest,
    Database,
    PrepareRequest,
    RestoreStart,
    ServiceStatus,
    User,
)
from tests.unit.guestagent.support import MARIADB_BASEDIR, mariadb_engine

PASSWORD = "bob-Pw-9f2e"
SHOP = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("bob", PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
ROW_BACKED_UP = (0, "row-in-the-backup")  # before the backup, in the file it ends in
ROW_A = (1, "row-A-before-the-moment")
ROW_B = (2, "row-B-after-the-moment")
SEPARATION = 1.2  # seconds between a commit and the moment, either side


@dataclasses.dataclass
class History:
    full: list[bytes]
    full_format: str
    backup_file: str  # the binary log the backup ends in
    moment: datetime.datetime  # a whole second between the commits of A and B
    files: list[ArchiveFile]
    contents: dict[str, bytes]


def login(engine: MariadbEngine) -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user="bob",
        password=PASSWORD,
        database="shop",
        connect_timeout=5,
        autocommit=True,
    )


def run(engine: MariadbEngine, statement: str, *args: object) -> list[tuple[object, ...]]:
    conn = login(engine)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, args or None)
            return list(cursor.fetchall())
    finally:
        conn.close()


def rows(engine: MariadbEngine) -> list[tuple[object, ...]]:
    return run(engine, "SELECT id, label FROM items ORDER BY id")


def insert(engine: MariadbEngine, row: tuple[int, str]) -> None:
    run(engine, "INSERT INTO items (id, label) VALUES (%s, %s)", *row)


def current_binlog(engine: MariadbEngine) -> str:
    with engine.admin.connect() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def server_binlogs(engine: MariadbEngine) -> list[str]:
    with engine.admin.connect() as cursor:
        cursor.execute("SHOW BINARY LOGS")
        return [str(row[0]) for row in cursor.fetchall()]


def restore_history(engine: MariadbEngine, history: History) -> None:
    start = RestoreStart(format=history.full_format, type="full", position=0)
    assert engine.restore(start, iter(history.full)) == sum(len(c) for c in history.full)
    for position, file in enumerate(history.files, start=1):
        data = history.contents[file.name]
        start = RestoreStart(format="binlog", type="archive", position=position, name=file.name)
        pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        assert engine.restore(start, iter(pieces)) == len(data)


@pytest.fixture(scope="module")
def source() -> Iterator[MariadbEngine]:
    with mariadb_engine() as engine:
        assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
        run(engine, "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(64)) ENGINE=InnoDB")
        yield engine


@pytest.fixture(scope="module")
def history(source: MariadbEngine) -> History:
    assert source.list_archive(rotate=True)  # a closed file from before the backup
    backup_file = current_binlog(source)
    insert(source, ROW_BACKED_UP)  # replayed again, it would break the restore
    *chunks, done = source.backup(BackupRequest(backup_id="full"))
    assert isinstance(done, BackupDone)
    full = [bytes(chunk) for chunk in chunks if isinstance(chunk, bytes)]
    insert(source, ROW_A)
    source.list_archive(rotate=True)
    time.sleep(SEPARATION)
    moment = math.ceil(time.time())
    time.sleep(max(0.0, moment + SEPARATION - time.time()))
    insert(source, ROW_B)
    files = source.list_archive(rotate=True)
    contents = {file.name: b"".join(source.fetch_archive(file.name)) for file in files}
    when = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return History(full, done.format, backup_file, when, files, contents)


def test_binary_logging_is_on_in_a_folder_of_its_own(source: MariadbEngine) -> None:
    admin = source.admin
    assert admin.variable("log_bin") == "1"
    assert admin.variable("log_bin_basename") == str(
        source.data_dir.parent / "binlog" / "mariadb-bin"
    )
    assert admin.variable("binlog_format") == "ROW"
    assert admin.variable("server_id") == "1"
    # sorts and temporary tables on the data volume, not in the container's small /tmp
    assert admin.variable("tmpdir") == str(source.data_dir / "tmp")
    assert admin.variable("sync_binlog") == "1"
    assert float(admin.variable("expire_logs_days") or "nan") == 0
    binlog_dir = source.data_dir.parent / "binlog"
    if source.options.os_user is not None and os.geteuid() == 0:
        assert binlog_dir.stat().st_uid == pwd.getpwnam(source.options.os_user).pw_uid
    assert not str(binlog_dir).startswith(str(source.datadir))


def test_the_closed_files_hold_both_commits_and_never_the_open_one(
    source: MariadbEngine, history: History
) -> None:
    names = [file.name for file in history.files]
    assert names and names == sorted(names)
    assert current_binlog(source) not in names
    for file in history.files:
        data = history.contents[file.name]
        assert len(data) == file.size
        assert data.startswith(b"\xfebin")
        assert file.closed_at == pytest.approx(
            (source.data_dir.parent / "binlog" / file.name).stat().st_mtime
        )
    assert len(names) == 3  # before the backup, holding A, holding B
    assert names[1] == history.backup_file
    assert ROW_A[1].encode() in history.contents[names[1]]
    assert ROW_B[1].encode() in history.contents[names[2]]


def test_recovery_to_a_moment_keeps_what_came_before_it(history: History) -> None:
    with mariadb_engine() as engine:
        restore_history(engine, history)
        request = PrepareRequest(
            restored=True,
            memory_mb=256,
            restore_time=history.moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            databases=(Database("later"),),
        )
        assert engine.prepare(request) is ServiceStatus.HEALTHY
        assert rows(engine) == [ROW_BACKED_UP, ROW_A]
        insert(engine, (3, "written after the recovery"))
        assert [row[0] for row in rows(engine)] == [0, 1, 3]
        assert {d.name for d in engine.list_databases()} == {"shop", "later"}
        assert engine.status().status is ServiceStatus.HEALTHY
        assert not (engine.data_dir / "restore-archive").exists()
        assert not (engine.data_dir / "restore").exists()
        assert engine.admin.variable("log_bin") == "1"
        assert engine.list_archive(rotate=True)  # the new instance archives in turn


def test_recovery_without_a_moment_replays_the_whole_archive(history: History) -> None:
    with mariadb_engine() as engine:
        restore_history(engine, history)
        assert engine.prepare(PrepareRequest(restored=True)) is ServiceStatus.HEALTHY
        assert rows(engine) == [ROW_BACKED_UP, ROW_A, ROW_B]
        insert(engine, (3, "still writable"))
        assert engine.check_consistency().ok


def test_recovery_to_a_moment_given_with_an_offset(history: History) -> None:
    with mariadb_engine() as engine:
        restore_history(engine, history)
        paris = datetime.timezone(datetime.timedelta(hours=2))
        moment = history.moment.astimezone(paris).isoformat()
        engine.prepare(PrepareRequest(restored=True, restore_time=moment))
        assert rows(engine) == [ROW_BACKED_UP, ROW_A]


def test_a_hole_in_the_restored_archive_fails_the_prepare(history: History) -> None:
    with mariadb_engine() as engine:
        start = RestoreStart(format=history.full_format, type="full", position=0)
        engine.restore(start, iter(history.full))
        for position, file in enumerate(history.files, start=1):
            if file.name != history.backup_file:
                start = RestoreStart("binlog", "archive", position, name=file.name)
                engine.restore(start, iter([history.contents[file.name]]))
        with pytest.raises(InvalidInput, match=f"lacks {history.backup_file}"):
            engine.prepare(PrepareRequest(restored=True))
        assert engine.status().status is ServiceStatus.FAILED


def test_archive_files_come_after_the_backups_with_good_names(history: History) -> None:
    data = history.contents[history.files[0].name]
    name = history.files[0].name
    with mariadb_engine() as engine:
        with pytest.raises(InvalidInput, match="before archive files"):
            engine.restore(RestoreStart("binlog", "archive", 1, name=name), iter([data]))
        engine.restore(RestoreStart(history.full_format, "full", 0), iter(history.full))
        for bad in ("../mariadb-bin.000001", "mariadb-bin.00001", "other.000001", ""):
            with pytest.raises(InvalidInput):
                engine.restore(RestoreStart("binlog", "archive", 1, name=bad), iter([data]))
        with pytest.raises(InvalidInput, match="binlog"):
            engine.restore(RestoreStart("tar", "archive", 1, name=name), iter([data]))
        with pytest.raises(InvalidInput, match="follow the backups"):
            engine.restore(RestoreStart("binlog", "archive", 0, name=name), iter([data]))
        assert not (engine.data_dir / "restore-archive").exists()
        assert engine.restore(RestoreStart("binlog", "archive", 1, name=name), iter([data]))
        with pytest.raises(InvalidInput, match="come before"):
            engine.restore(RestoreStart(history.full_format, "incremental", 1), iter([b"x"]))
        assert [p.name for p in (engine.data_dir / "restore-archive").iterdir()] == [name]


def test_rotation_without_new_changes_adds_no_file(source: MariadbEngine, history: History) -> None:
    before = source.list_archive(rotate=True)
    current = current_binlog(source)
    assert source.list_archive(rotate=True) == before
    assert source.list_archive(rotate=False) == before
    assert current_binlog(source) == current


def test_fetch_refuses_bad_missing_and_open_files(source: MariadbEngine, history: History) -> None:
    for bad in ("../../etc/passwd", "mariadb-bin.000001/..", "mariadb-bin.1", "mariadb-bin.index"):
        with pytest.raises(InvalidInput, match="not a binary log file name"):
            source.fetch_archive(bad)
    with pytest.raises(InvalidInput, match="still open"):
        source.fetch_archive(current_binlog(source))
    with pytest.raises(InvalidInput, match="no binary log"):
        source.fetch_archive("mariadb-bin.000000")
    pieces = list(source.fetch_archive(history.files[0].name))
    assert all(0 < len(piece) <= CHUNK_BYTES for piece in pieces)


def test_remove_purges_the_oldest_stored_files(source: MariadbEngine, history: History) -> None:
    for n in range(10, 13):  # three more closed files
        insert(source, (n, f"row {n}"))
        source.list_archive(rotate=True)
    files = [file.name for file in source.list_archive(rotate=False)]
    assert len(files) >= 3
    with pytest.raises(InvalidInput, match="still open"):
        source.remove_archive((files[0], current_binlog(source)))
    with pytest.raises(InvalidInput, match="not a binary log file name"):
        source.remove_archive(("../mysql/ibdata1",))
    assert source.remove_archive((files[1],)) == 0  # the older one is not stored yet
    assert source.remove_archive((files[0], files[1])) == 2
    assert source.remove_archive((files[0],)) == 0  # already gone
    left = [file.name for file in source.list_archive(rotate=False)]
    assert left == files[2:]
    assert server_binlogs(source)[0] == files[2]
    assert not (source.data_dir.parent / "binlog" / files[0]).exists()
    assert not (source.data_dir.parent / "binlog" / files[1]).exists()
    insert(source, (20, "after the purge"))  # the server goes on logging


def test_an_unprepared_engine_has_no_archive() -> None:
    with mariadb_engine() as engine:
        assert engine.list_archive(rotate=True) == []
        assert engine.remove_archive(("mariadb-bin.000001",)) == 0
        with pytest.raises(InvalidInput):
            engine.remove_archive(("../x",))


def test_restore_time_must_be_rfc3339_and_needs_a_restore() -> None:
    with mariadb_engine() as engine:
        for bad in ("yesterday", "2024-13-01T00:00:00Z", "1969-07-20T20:17:00Z", "9" * 100):
            with pytest.raises(InvalidInput, match="restore time"):
                engine.prepare(PrepareRequest(restored=True, restore_time=bad))
        with pytest.raises(InvalidInput, match="needs a restored instance"):
            engine.prepare(PrepareRequest(restore_time="2024-05-01T12:30:00Z"))
        assert not engine.prepared()


def test_restore_times_are_normalised_to_utc() -> None:
    utc = datetime.UTC
    assert checked_restore_time("") is None
    expected = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=utc)
    assert checked_restore_time("2024-05-01T12:30:00Z") == expected
    assert checked_restore_time("2024-05-01T14:30:00+02:00") == expected
    assert checked_restore_time("2024-05-01T12:30:00") == expected


@pytest.fixture(scope="module", autouse=True)
def _tools_installed() -> None:
    for tool in ("mariabackup", "mbstream", "mariadb-binlog", "mariadb"):
        if shutil.which(tool, path=str(MARIADB_BASEDIR / "bin")) is None:
            pytest.skip(f"{tool} is not installed")
