"""The WAL archive and point-in-time recovery of PostgresEngine, on real PostgreSQL 15 servers.

One prepared source is backed up; then row A is committed, a moment T noted, row B
committed, and the archive rotated and fetched. Fresh engines get the backup and the
archive files, and recover to T (A without B) or to the archive's end (A and B).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    ArchiveFile,
    BackupDone,
    BackupRequest,
    Database,
    PrepareRequest,
    RestoreStart,
    ServiceStatus,
    User,
)
from guestagent.engines.postgres import PostgresEngine
from guestagent.engines.postgres_archive import checked_name, checked_target_time
from guestagent.engines.postgres_config import (
    RECOVERY_FILE,
    ServerSettings,
    archive_command,
    render_settings,
)
from guestagent.errors import EngineError
from tests.unit.guestagent.support import postgres_engine

PASSWORD = "pitr-Archive-pw-27182"
SOURCE = PrepareRequest(
    databases=(Database("shop"),),
    users=(User("ann", PASSWORD, databases=("shop",)),),
    memory_mb=256,
)
FULL = RestoreStart(format="tar")
APART = 1.1  # seconds between the commits and the target time, so their times differ


@dataclasses.dataclass(frozen=True)
class History:
    """A backup of the source, then row A, the moment T, row B and the archive after B."""

    backup: bytes
    target_time: str
    b_segment: str  # the WAL segment B was committed in
    listed: tuple[ArchiveFile, ...]
    files: dict[str, bytes]


def login(engine: PostgresEngine) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=engine.options.port,
        user="ann",
        password=PASSWORD,
        dbname="shop",
        autocommit=True,
        connect_timeout=5,
    )


def items(engine: PostgresEngine) -> set[str]:
    with login(engine) as conn:
        return {str(row[0]) for row in conn.execute("SELECT item FROM orders")}


def fetched(engine: PostgresEngine, name: str) -> bytes:
    return b"".join(engine.fetch_archive(name))


def restore_all(engine: PostgresEngine, history: History) -> None:
    """Fill a fresh engine as the control plane does: the backup, then each archive file."""
    assert engine.restore(FULL, iter([history.backup])) == len(history.backup)
    for position, name in enumerate(sorted(history.files), start=1):
        start = RestoreStart(format="wal", type="archive", position=position, name=name)
        assert engine.restore(start, iter([history.files[name]])) == len(history.files[name])


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        engine.prepare(SOURCE)
        with login(engine) as conn:
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
            conn.execute("INSERT INTO orders (item) VALUES ('before-backup')")
        yield engine


@pytest.fixture(scope="module")
def history(source: PostgresEngine) -> History:
    pieces = list(source.backup(BackupRequest(backup_id="pitr-1")))
    assert isinstance(pieces[-1], BackupDone)
    backup = b"".join(piece for piece in pieces if isinstance(piece, bytes))
    with login(source) as conn:
        conn.execute("INSERT INTO orders (item) VALUES ('A')")
        time.sleep(APART)
        target = datetime.datetime.now(datetime.UTC).isoformat()
        time.sleep(APART)
        conn.execute("INSERT INTO orders (item) VALUES ('B')")
        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    listed = source.list_archive(rotate=True)
    files = {f.name: fetched(source, f.name) for f in listed}
    return History(backup, target, str(row[0]), tuple(listed), files)


@pytest.fixture
def fresh() -> Iterator[PostgresEngine]:
    with postgres_engine() as engine:
        yield engine


def test_archiving_is_on_into_a_folder_of_the_engines_user(source: PostgresEngine) -> None:
    with login(source) as conn:
        row = conn.execute(
            "SELECT current_setting('archive_mode'), current_setting('wal_level')"
        ).fetchone()
    assert row == ("on", "replica")
    folder = source.data_dir.parent / "wal-archive"  # beside the volume, not on it
    assert folder.is_dir()
    assert folder.stat().st_uid == source.pgdata.stat().st_uid
    assert folder.stat().st_mode & 0o777 == 0o700


def test_rotate_archives_the_segment_holding_the_last_commit(history: History) -> None:
    names = [f.name for f in history.listed]
    assert names == sorted(names)
    assert history.b_segment in names
    assert all(checked_name(name) == name for name in names)
    for listed in history.listed:
        assert listed.size == len(history.files[listed.name]) > 0
    closed = next(f.closed_at for f in history.listed if f.name == history.b_segment)
    assert closed > datetime.datetime.fromisoformat(history.target_time).timestamp()


def test_rotate_without_new_wal_closes_no_segment(source: PostgresEngine, history: History) -> None:
    first = source.list_archive(rotate=True)
    assert source.list_archive(rotate=True) == first
    assert source.list_archive(rotate=False) == first


def test_recovery_to_a_moment_keeps_what_was_committed_before_it(
    fresh: PostgresEngine, history: History
) -> None:
    restore_all(fresh, history)
    assert (fresh.data_dir / "restore-archive").is_dir()

    status = fresh.prepare(
        PrepareRequest(restored=True, restore_time=history.target_time, memory_mb=256)
    )

    assert status is ServiceStatus.HEALTHY
    assert items(fresh) == {"before-backup", "A"}
    with login(fresh) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        conn.execute("INSERT INTO orders (item) VALUES ('after-recovery')")
    assert not (fresh.pgdata / "recovery.signal").exists()
    assert not (fresh.pgdata / RECOVERY_FILE).exists()
    assert not (fresh.data_dir / "restore-archive").exists()
    assert fresh.apply_configuration({}) is False, "no recovery setting waits for a restart"

    fresh.stop()
    fresh.start()
    assert fresh.status().status is ServiceStatus.HEALTHY
    assert items(fresh) == {"before-backup", "A", "after-recovery"}
    # The recovered instance archives its own new timeline.
    assert any(f.name.endswith(".history") for f in fresh.list_archive(rotate=True))


def test_recovery_without_a_moment_replays_the_whole_archive(
    fresh: PostgresEngine, history: History
) -> None:
    restore_all(fresh, history)

    fresh.prepare(PrepareRequest(restored=True, memory_mb=256))

    assert items(fresh) == {"before-backup", "A", "B"}
    with login(fresh) as conn:
        conn.execute("INSERT INTO orders (item) VALUES ('after-recovery')")
    assert not (fresh.pgdata / RECOVERY_FILE).exists()


def test_a_past_moment_after_the_last_archived_commit_recovers_the_whole_archive(
    fresh: PostgresEngine, history: History
) -> None:
    restore_all(fresh, history)
    # later than every archived commit but past: the segment open then had closed already
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(milliseconds=50)

    fresh.prepare(PrepareRequest(restored=True, memory_mb=256, restore_time=moment.isoformat()))

    assert items(fresh) == {"before-backup", "A", "B"}
    assert not (fresh.pgdata / RECOVERY_FILE).exists()


def test_a_moment_after_the_end_of_the_archive_is_an_error(
    fresh: PostgresEngine, history: History
) -> None:
    restore_all(fresh, history)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    with pytest.raises(EngineError, match=r"^the archive ends before .*: recovery ended before"):
        fresh.prepare(PrepareRequest(restored=True, restore_time=later.isoformat()))

    assert fresh.status().status is ServiceStatus.FAILED
    assert not fresh.process.running()


def test_remove_archive_deletes_the_named_files(source: PostgresEngine, history: History) -> None:
    first = history.listed[0].name

    assert source.remove_archive((first, "00000001000000FF000000FF")) == 1

    assert first not in {f.name for f in source.list_archive(rotate=False)}
    assert source.remove_archive((first,)) == 0
    with pytest.raises(InvalidInput, match=f"no archive file named '{first}'"):
        source.fetch_archive(first)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../pgdata/PG_VERSION",
        "wal-archive/000000010000000000000001",
        "000000010000000000000001.cellar-copy",
        "00000001000000000000000g",
        "0000000100000000000000011",
        "000000010000000000000001/..",
        ".history",
    ],
)
def test_bad_archive_names_are_refused(
    source: PostgresEngine, fresh: PostgresEngine, name: str
) -> None:
    with pytest.raises(InvalidInput, match="not the name of a WAL archive file"):
        source.fetch_archive(name)
    with pytest.raises(InvalidInput, match="not the name of a WAL archive file"):
        source.remove_archive(("000000010000000000000001", name))
    with pytest.raises(InvalidInput, match="not the name of a WAL archive file"):
        checked_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "000000010000000000000001",
        "0000000100000000000000A2.partial",
        "000000010000000000000002.00000028.backup",
        "00000002.history",
    ],
)
def test_the_names_the_server_gives_archive_files_are_accepted(name: str) -> None:
    assert checked_name(name) == name


def test_archive_files_are_restored_after_the_full_backup_with_good_names(
    fresh: PostgresEngine, history: History
) -> None:
    name = history.b_segment
    start = RestoreStart(format="wal", type="archive", position=1, name=name)
    with pytest.raises(EngineError, match=r"restore the full backup \(position 0\) before"):
        fresh.restore(start, iter([b"never read"]))

    fresh.restore(FULL, iter([history.backup]))
    bad = dataclasses.replace(start, name="../pgdata/backup_label")
    with pytest.raises(InvalidInput, match="not the name of a WAL archive file"):
        fresh.restore(bad, iter([b"never read"]))
    with pytest.raises(InvalidInput, match="follow the full backup"):
        fresh.restore(dataclasses.replace(start, position=0), iter([b"never read"]))

    assert fresh.restore(start, iter([b"ab", b"cd"])) == 4
    assert (fresh.data_dir / "restore-archive" / name).read_bytes() == b"abcd"
    assert [p.name for p in (fresh.data_dir / "restore-archive").iterdir()] == [name]


def test_list_archive_before_prepare_is_empty(fresh: PostgresEngine) -> None:
    assert fresh.list_archive(rotate=True) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01 12:00:00+00:00"),
        ("2024-05-01T14:00:00.250+02:00", "2024-05-01 12:00:00.250000+00:00"),
        ("2024-05-01T12:00:00", "2024-05-01 12:00:00+00:00"),
        ("", ""),
    ],
)
def test_restore_times_are_read_as_rfc_3339_in_utc(text: str, expected: str) -> None:
    assert checked_target_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "'; DROP TABLE x"])
def test_garbage_restore_times_are_refused(fresh: PostgresEngine, text: str) -> None:
    with pytest.raises(InvalidInput, match="not an RFC 3339 timestamp"):
        fresh.prepare(PrepareRequest(restored=True, restore_time=text))
    assert fresh.status().status is ServiceStatus.NEW


def test_a_restore_time_needs_a_restored_instance(fresh: PostgresEngine) -> None:
    with pytest.raises(InvalidInput, match="needs a restored instance"):
        fresh.prepare(PrepareRequest(restore_time="2024-05-01T12:00:00Z"))


def test_settings_turn_archiving_on_with_a_quoted_command() -> None:
    settings = ServerSettings(5432, Path("/run/pg"), archive_dir=Path("/data/it's 100%"))
    lines = render_settings(settings).splitlines()

    assert "wal_level = replica" in lines
    assert "archive_mode = on" in lines
    command = next(line for line in lines if line.startswith("archive_command = "))
    assert "''" in command and "100%%" in command
    without = render_settings(ServerSettings(5432, Path("/run/pg"))).splitlines()
    assert not [line for line in without if line.startswith("archive_")]


def run_archive_command(folder: Path, source: Path) -> int:
    """Run the archive command as the server would, for the segment ``source``."""
    line = archive_command(folder).replace("%p", str(source)).replace("%f", source.name)
    return subprocess.run(["sh", "-c", line.replace("%%", "%")], check=False).returncode


def test_the_archive_command_copies_once_and_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "wal archive's 100%"
    folder.mkdir()
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(os.urandom(4096))

    assert run_archive_command(folder, segment) == 0
    assert (folder / segment.name).read_bytes() == segment.read_bytes()
    assert run_archive_command(folder, segment) == 0  # a retry of the same segment

    segment.write_bytes(os.urandom(4096))
    assert run_archive_command(folder, segment) != 0  # a different one of the same name
    assert [p.name for p in folder.iterdir()] == [segment.name]
