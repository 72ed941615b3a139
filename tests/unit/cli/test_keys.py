"""``cellar secrets rotate-key``, run where Cellar runs, against its metadata database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from cellar import settings as settings_module
from cellar.cli.main import main
from cellar.db import Database
from cellar.models import ReplicaSet, new_id
from cellar.secrets import KEY_ENV, KeyRing, SecretBox


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Cellar home with its metadata and one replica set's password, sealed by its key."""
    home = tmp_path / "home"
    monkeypatch.setenv("CELLAR_HOME", str(home))
    for name in (KEY_ENV, "CELLAR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    db = Database(settings_module.load().database_url)
    db.upgrade()
    add_set(db, SecretBox.from_home(home))
    yield home
    db.engine.dispose()


def add_set(db: Database, box: SecretBox) -> None:
    with db.session() as session:
        session.add(
            ReplicaSet(
                project_id="p1",
                primary_id=new_id(),
                datastore="postgresql",
                secret=box.seal({"password": "pw-repl"}),
            )
        )


def passwords(home: Path, box: SecretBox) -> list[str]:
    db = Database(settings_module.load().database_url)
    try:
        with db.session() as session:
            return [box.open(v)["password"] for v in session.scalars(select(ReplicaSet.secret))]
    finally:
        db.engine.dispose()


def test_rotate_key_puts_a_new_key_first_and_seals_everything_with_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = KeyRing(home).keys()
    assert main(["-f", "json", "secrets", "rotate-key"]) == 0
    out, err = capsys.readouterr()
    counts = {row["secrets"]: row["resealed"] for row in json.loads(out)}
    assert counts == {
        "task secrets": 0, "replication passwords": 1, "backup data keys": 0,
        "passwords awaiting approval": 0,
    }  # fmt: skip
    keys = KeyRing(home).keys()
    assert keys[1:] == old
    assert passwords(home, SecretBox(keys[0])) == ["pw-repl"]
    assert "--retire" in err
    assert all(key.decode() not in out + err for key in keys)


def test_retire_refuses_until_everything_is_sealed_with_the_newest_key(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = KeyRing(home).keys()[0]
    assert main(["secrets", "rotate-key"]) == 0
    db = Database(settings_module.load().database_url)
    add_set(db, SecretBox(old))  # sealed by a process that had not seen the new key yet
    db.engine.dispose()
    capsys.readouterr()
    assert main(["secrets", "rotate-key", "--retire"]) == 1
    assert "1 replication passwords" in capsys.readouterr().err
    assert len(KeyRing(home).keys()) == 2
    assert main(["secrets", "rotate-key", "--reseal"]) == 0
    assert main(["secrets", "rotate-key", "--retire"]) == 0
    (newest,) = KeyRing(home).keys()
    assert passwords(home, SecretBox(newest)) == ["pw-repl", "pw-repl"]


def test_with_keys_in_the_environment_it_seals_with_their_first_and_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    new, old = Fernet.generate_key(), KeyRing(home).keys()[0]
    monkeypatch.setenv(KEY_ENV, f"{new.decode()},{old.decode()}")
    assert main(["secrets", "rotate-key"]) == 0
    assert f"the keys come from {KEY_ENV}" in capsys.readouterr().err
    assert passwords(home, SecretBox(new)) == ["pw-repl"]
    assert main(["secrets", "rotate-key", "--retire"]) == 0
    assert f"remove the others from {KEY_ENV}" in capsys.readouterr().out


def test_without_a_metadata_database_it_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CELLAR_DATABASE_URL", raising=False)
    assert main(["secrets", "rotate-key"]) == 2
    assert "no metadata database" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
