"""The engines' own files refuse links the engine's user planted in its folders.

The engine's user (the tenant's database superuser, through ``COPY ... TO PROGRAM`` and
the like) can put anything in its data directory. Here a symlink to a file outside
stands where an engine writes a configuration file, a signal, a restored folder or a
password; each call refuses it, and the outside file keeps its content, owner and mode
(and no copy of it lands in the engine's folder).
"""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from guestagent.engines.mariadb_backup import read_checkpoints
from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres_admin import PostgresAdmin
from guestagent.engines.postgres_backup import PostgresBackups
from guestagent.engines.postgres_config import ServerSettings, write_config, write_recovery
from guestagent.engines.postgres_process import PostgresProcess
from guestagent.engines.redis_admin import load_or_create_password
from guestagent.engines.redis_config import write_admin_acl
from guestagent.errors import UnsafePath

SECRET = b"root:$6$not-for-the-tenant:19000:0:99999:7:::\n"


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def holds_secret(folder: Path) -> bool:
    """True if a plain file in ``folder`` has the secret in it."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return any(SECRET in path.read_bytes() for path in files)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    path.chmod(0o640)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    (path / "pgdata").mkdir(parents=True)
    return path


def test_postgres_config_refuses_a_linked_postgresql_conf(data_dir: Path, secret: Path) -> None:
    pgdata = data_dir / "pgdata"
    before = snapshot(secret)
    (pgdata / "postgresql.conf").symlink_to(secret)

    with pytest.raises(UnsafePath, match=r"postgresql\.conf"):
        write_config(pgdata, ServerSettings(5432, data_dir / "run"), OsUser())

    assert snapshot(secret) == before
    assert not holds_secret(pgdata)


def test_a_recovery_signal_link_makes_no_file_outside(data_dir: Path, secret: Path) -> None:
    pgdata = data_dir / "pgdata"
    planted = secret.with_name("created-by-root")
    (pgdata / "recovery.signal").symlink_to(planted)

    with pytest.raises(UnsafePath, match=r"recovery\.signal"):
        write_recovery(pgdata, data_dir / "restore-archive", "", OsUser())

    assert not planted.exists()


def test_a_restore_does_not_unpack_through_a_linked_folder(data_dir: Path, secret: Path) -> None:
    target = data_dir / "pgdata.restoring"
    target.mkdir()
    (target / "base").symlink_to(secret.parent, target_is_directory=True)
    process = PostgresProcess(Path("/nonexistent"), data_dir / "pgdata", data_dir, 5432, OsUser())
    backups = PostgresBackups(process, PostgresAdmin(process))
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as archive:
        for name in ("base", "base/1"):
            folder = tarfile.TarInfo(name)
            folder.type = tarfile.DIRTYPE
            archive.addfile(folder)
        member = tarfile.TarInfo("base/1/shadow")
        member.size = 4
        archive.addfile(member, io.BytesIO(b"evil"))
    before = snapshot(secret)

    with pytest.raises(UnsafePath, match="symlink"):
        backups.unpack(iter([stream.getvalue()]), target)

    assert snapshot(secret) == before
    assert sorted(p.name for p in secret.parent.iterdir()) == ["shadow"]


def test_redis_password_file_is_neither_read_nor_written_through_a_link(
    data_dir: Path, secret: Path
) -> None:
    before = snapshot(secret)
    password_file = data_dir / ".cellar-admin-password"
    password_file.symlink_to(secret)

    with pytest.raises(UnsafePath, match="symlink"):
        load_or_create_password(password_file)

    password_file.unlink()
    (data_dir / ".cellar-admin-password.new").symlink_to(secret)
    password = load_or_create_password(password_file)
    assert password_file.read_text() == password + "\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert snapshot(secret) == before


def test_redis_acl_file_is_not_copied_from_a_link(data_dir: Path, secret: Path) -> None:
    before = snapshot(secret)
    (data_dir / "users.acl").symlink_to(secret)

    with pytest.raises(UnsafePath, match=r"users\.acl"):
        write_admin_acl(data_dir, "agent-password", OsUser())

    assert snapshot(secret) == before
    assert not holds_secret(data_dir)


def test_mariadb_checkpoints_are_not_read_through_a_linked_staging(
    data_dir: Path, secret: Path
) -> None:
    (secret.parent / "0").mkdir()
    (secret.parent / "0" / "xtrabackup_checkpoints").write_text("to_lsn = 42\n")
    (data_dir / "restore").symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(UnsafePath, match="symlink"):
        read_checkpoints(data_dir / "restore" / "0", trusted=data_dir)
