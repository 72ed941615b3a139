"""OsUser.own and write_if_changed give files to the engine's user, never through a link.

The agent runs as root; ``nobody`` stands in for the engine's user. A file outside the
engine's folders is the target of every planted link and must keep its content, owner
and mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from guestagent.engines.os_user import write_if_changed
from guestagent.errors import UnsafePath
from tests.unit.guestagent.test_safe_files import NOBODY, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "opt-cellar" / "agent.key"
    path.parent.mkdir()
    path.write_bytes(b"the agent's key\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "pgdata"
    path.mkdir(parents=True)
    os.chown(path, *NOBODY.ids() or (0, 0))
    return path


def test_own_gives_a_file_and_a_folder_to_the_user(pgdata: Path) -> None:
    (pgdata / "standby.signal").touch()

    NOBODY.own(pgdata / "standby.signal")
    NOBODY.own(pgdata)

    for path in (pgdata / "standby.signal", pgdata):
        assert (path.stat().st_uid, path.stat().st_gid) == NOBODY.ids()


def test_own_refuses_a_symlink_to_a_file_or_a_folder(pgdata: Path, secret: Path) -> None:
    before = snapshot(secret)
    (pgdata / "standby.signal").symlink_to(secret)
    (pgdata / "pg_wal").symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(UnsafePath, match="symlink"):
        NOBODY.own(pgdata / "standby.signal")
    with pytest.raises(UnsafePath, match="symlink"):
        NOBODY.own(pgdata / "pg_wal")

    assert snapshot(secret) == before
    assert secret.parent.stat().st_uid == 0


def test_write_if_changed_writes_0600_files_of_the_user_once(pgdata: Path) -> None:
    path = pgdata / "cellar.conf"

    assert write_if_changed(path, "port = 5432\n", NOBODY) is True
    assert write_if_changed(path, "port = 5432\n", NOBODY) is False

    info = path.lstat()
    assert path.read_text() == "port = 5432\n"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == NOBODY.ids()
    assert write_if_changed(path, "port = 5433\n", NOBODY) is True
    assert sorted(p.name for p in pgdata.iterdir()) == ["cellar.conf"]


def test_write_if_changed_refuses_a_symlink_at_the_target(pgdata: Path, secret: Path) -> None:
    before = snapshot(secret)
    (pgdata / "postgresql.cellar.conf").symlink_to(secret)

    with pytest.raises(UnsafePath, match="symlink"):
        write_if_changed(pgdata / "postgresql.cellar.conf", "port = 5432\n", NOBODY)

    assert snapshot(secret) == before


def test_write_if_changed_does_not_follow_a_symlink_at_the_scratch(
    pgdata: Path, secret: Path
) -> None:
    before = snapshot(secret)
    (pgdata / "postgresql.cellar.conf.cellar-new").symlink_to(secret)

    assert write_if_changed(pgdata / "postgresql.cellar.conf", "port = 5432\n", NOBODY)

    assert snapshot(secret) == before
    written = pgdata / "postgresql.cellar.conf"
    assert not written.is_symlink() and written.read_text() == "port = 5432\n"
    assert written.stat().st_uid == (NOBODY.ids() or (0, 0))[0]


def test_write_if_changed_refuses_a_pgdata_swapped_for_a_symlink(
    pgdata: Path, secret: Path
) -> None:
    before = snapshot(secret)
    pgdata.rmdir()
    pgdata.symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(UnsafePath, match="symlink"):
        write_if_changed(pgdata / "agent.key", "owned\n", NOBODY)

    assert snapshot(secret) == before
    assert sorted(p.name for p in secret.parent.iterdir()) == ["agent.key"]
