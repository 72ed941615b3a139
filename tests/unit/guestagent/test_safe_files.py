"""The agent's writes in folders the engine's user can write to never follow a planted link.

Each test plants what the engine's user could (a symlink, a FIFO, a hard link) where the
agent is about to write or chown, pointing at a file outside, and checks that the
outside file keeps its content, owner and mode. Ownership needs root: those tests give
files to ``nobody`` and are skipped otherwise.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from guestagent import safe_files
from guestagent.engines.os_user import OsUser
from guestagent.errors import UnsafePath

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="giving files away needs root")
NOBODY = OsUser("nobody")


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    """What must not change in a file outside: content, owner, group and mode."""
    info = path.stat()
    return path.read_bytes(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file of the system's, outside the engine's folders."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret"
    path.write_bytes(b"root's secret\n")
    path.chmod(0o640)
    return path


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    """A folder of the engine's (its data directory)."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@needs_root
def test_a_new_file_is_0600_and_the_engines(engine_dir: Path) -> None:
    target = engine_dir / "cellar.conf"

    safe_files.write_file(target, b"port = 5432\n", NOBODY)

    info = target.lstat()
    assert target.read_bytes() == b"port = 5432\n"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == NOBODY.ids()
    assert sorted(p.name for p in engine_dir.iterdir()) == ["cellar.conf"]


def test_a_symlink_at_the_scratch_name_is_replaced_not_followed(
    engine_dir: Path, secret: Path
) -> None:
    before = snapshot(secret)
    (engine_dir / "cellar.conf.cellar-new").symlink_to(secret)

    safe_files.write_file(engine_dir / "cellar.conf", b"port = 5432\n", NOBODY)

    assert snapshot(secret) == before
    assert (engine_dir / "cellar.conf").read_bytes() == b"port = 5432\n"
    assert not (engine_dir / "cellar.conf.cellar-new").exists()


def test_a_symlink_at_the_target_is_refused(engine_dir: Path, secret: Path) -> None:
    before = snapshot(secret)
    (engine_dir / "cellar.conf").symlink_to(secret)

    with pytest.raises(UnsafePath, match="symlink"):
        safe_files.write_file(engine_dir / "cellar.conf", b"port = 5432\n", NOBODY)

    assert snapshot(secret) == before
    assert (engine_dir / "cellar.conf").is_symlink()
    assert not (engine_dir / "cellar.conf.cellar-new").exists()


def test_a_folder_swapped_for_a_symlink_is_refused(engine_dir: Path, secret: Path) -> None:
    (engine_dir / "pgdata").symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(UnsafePath, match="symlink"):
        safe_files.write_file(engine_dir / "pgdata" / "secret", b"x", NOBODY)
    with pytest.raises(UnsafePath, match="symlink"):
        safe_files.write_file(engine_dir / "pgdata" / "new.conf", b"x", NOBODY)

    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret"]


def test_a_link_deeper_in_is_refused_with_a_trusted_base(engine_dir: Path, secret: Path) -> None:
    staging = engine_dir / "restore"
    staging.mkdir()
    (staging / "0").symlink_to(secret.parent, target_is_directory=True)
    before = snapshot(secret)

    with pytest.raises(UnsafePath):
        safe_files.read_text(staging / "0" / "secret", trusted=engine_dir)
    with pytest.raises(UnsafePath):
        safe_files.create_file(staging / "0" / "secret", NOBODY, trusted=engine_dir)
    (staging / "0").unlink()
    staging.rmdir()
    staging.symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        safe_files.write_file(staging / "0" / "x", b"x", NOBODY, trusted=engine_dir)

    assert snapshot(secret) == before


def test_reads_refuse_links_fifos_and_extra_hard_links(engine_dir: Path, secret: Path) -> None:
    (engine_dir / "link.conf").symlink_to(secret)
    os.mkfifo(engine_dir / "fifo.conf")
    os.link(secret, engine_dir / "hard.conf")

    for name in ("link.conf", "fifo.conf", "hard.conf"):
        with pytest.raises(UnsafePath):
            safe_files.read_text(engine_dir / name)
    with pytest.raises(FileNotFoundError):
        safe_files.read_text(engine_dir / "missing.conf")
    assert safe_files.read_text(engine_dir / "missing.conf", missing="") == ""


@needs_root
def test_own_refuses_a_symlink_a_fifo_and_a_hard_link(engine_dir: Path, secret: Path) -> None:
    before = snapshot(secret)
    (engine_dir / "link").symlink_to(secret)
    (engine_dir / "folder-link").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(engine_dir / "fifo")
    os.link(secret, engine_dir / "hard")

    for name in ("link", "folder-link", "fifo", "hard"):
        with pytest.raises(UnsafePath):
            safe_files.own(engine_dir / name, NOBODY)

    assert snapshot(secret) == before
    assert secret.parent.stat().st_uid == 0


@needs_root
def test_make_dir_refuses_a_symlink_where_the_folder_goes(engine_dir: Path, secret: Path) -> None:
    outside = secret.parent
    outside_mode = stat.S_IMODE(outside.stat().st_mode)
    (engine_dir / "pgdata.restoring").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePath, match="symlink"):
        safe_files.make_dir(engine_dir / "pgdata.restoring", NOBODY, mode=0o700)

    assert outside.stat().st_uid == 0
    assert stat.S_IMODE(outside.stat().st_mode) == outside_mode


@needs_root
def test_make_dir_makes_the_folder_exactly_and_gives_it_away(engine_dir: Path) -> None:
    folder = engine_dir / "restore" / "0"

    safe_files.make_dir(folder, NOBODY, mode=0o700)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder.stat().st_uid, folder.stat().st_gid) == NOBODY.ids()
    assert (engine_dir / "restore").stat().st_uid == 0  # made on the way, as mkdir -p
    with pytest.raises(FileExistsError):
        safe_files.make_dir(folder, NOBODY, exist_ok=False)


def test_touch_refuses_a_dangling_symlink(engine_dir: Path, secret: Path) -> None:
    planted = secret.parent / "new-root-file"
    (engine_dir / "standby.signal").symlink_to(planted)

    with pytest.raises(UnsafePath, match="symlink"):
        safe_files.touch(engine_dir / "standby.signal", NOBODY, mode=0o600)

    assert not planted.exists()


@needs_root
def test_own_tree_gives_away_plain_files_and_refuses_a_link(engine_dir: Path, secret: Path) -> None:
    tree = engine_dir / "restore" / "0"
    (tree / "mysql").mkdir(parents=True)
    (tree / "mysql" / "user.frm").write_bytes(b"x")
    (tree / "ibdata1").write_bytes(b"y")

    safe_files.own_tree(tree, NOBODY)

    for path in (tree, tree / "mysql", tree / "mysql" / "user.frm", tree / "ibdata1"):
        assert (path.stat().st_uid, path.stat().st_gid) == NOBODY.ids()

    before = snapshot(secret)
    (tree / "mysql" / "planted").symlink_to(secret)
    with pytest.raises(UnsafePath):
        safe_files.own_tree(tree, NOBODY)
    assert snapshot(secret) == before


def test_remove_tree_refuses_a_symlink_and_a_fifo(engine_dir: Path, secret: Path) -> None:
    (engine_dir / "mysql").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(engine_dir / "restore-archive")

    with pytest.raises(UnsafePath):
        safe_files.remove_tree(engine_dir / "mysql")
    with pytest.raises(NotADirectoryError):  # at once: rmtree would wait on the FIFO
        safe_files.remove_tree(engine_dir / "restore-archive")
    safe_files.remove_tree(engine_dir / "restore-archive", ignore_errors=True)

    assert secret.exists()


def test_a_failed_write_leaves_the_target_and_no_scratch(engine_dir: Path) -> None:
    target = engine_dir / "dump.rdb"
    target.write_bytes(b"old")

    with (
        pytest.raises(RuntimeError),
        safe_files.writing(target, None, scratch=".dump.rdb.restoring") as out,
    ):
        out.write(b"half")
        raise RuntimeError("the stream broke")

    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in engine_dir.iterdir()) == ["dump.rdb"]


def test_append_and_move_refuse_symlinks(engine_dir: Path, secret: Path) -> None:
    before = snapshot(secret)
    (engine_dir / "engine.log").symlink_to(secret)

    with pytest.raises(UnsafePath):
        safe_files.append_to(engine_dir / "engine.log")
    (engine_dir / "log").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        safe_files.move(engine_dir / "log" / "secret", engine_dir / "taken")

    assert snapshot(secret) == before
