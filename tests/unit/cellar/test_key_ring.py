"""Cellar's key ring: the first key seals, every key opens, a changed key file is seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cellar.errors import CellarError
from cellar.secrets import KEY_ENV, KeyRing, SecretBox


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def key_file(home: Path, *keys: bytes) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "secret.key"
    path.write_bytes(b"\n".join(keys) + b"\n")
    return path


def test_a_missing_key_file_is_made_private_with_one_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    assert len(ring.keys()) == 1
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_with_two_keys_the_first_seals_and_both_open(tmp_path: Path) -> None:
    new, old = Fernet.generate_key(), Fernet.generate_key()
    key_file(tmp_path, new, old)
    box = SecretBox.from_home(tmp_path)
    by_old = SecretBox(old).seal({"password": "pw"})
    assert box.open(by_old) == {"password": "pw"}
    sealed = box.seal({"password": "pw"})
    assert Fernet(new).decrypt(sealed)
    assert (box.sealed_by_newest(sealed), box.sealed_by_newest(by_old)) == (True, False)
    assert Fernet(new).decrypt(box.reseal(by_old))


def test_the_environment_gives_keys_comma_separated_before_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = Fernet.generate_key(), Fernet.generate_key()
    key_file(tmp_path, Fernet.generate_key())
    monkeypatch.setenv(KEY_ENV, f"{first.decode()}, {second.decode()}")
    ring = KeyRing(tmp_path)
    assert ring.keys() == [first, second]
    assert ring.from_environment
    with pytest.raises(CellarError, match=f"the keys come from {KEY_ENV}"):
        ring.write([Fernet.generate_key()])


def test_a_running_process_takes_a_new_key_file_without_a_restart(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    key_file(tmp_path, old)
    box = SecretBox.from_home(tmp_path)
    before = box.seal({"password": "pw"})
    KeyRing(tmp_path).write([new, old])  # what rotate-key does, from another process
    after = box.seal({"password": "pw"})
    assert Fernet(new).decrypt(after)
    assert box.open(before) == box.open(after) == {"password": "pw"}


def test_a_key_file_edited_in_place_is_read_again(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    path = key_file(tmp_path, old)
    box = SecretBox.from_home(tmp_path)
    box.seal({"a": "b"})
    inode = path.stat().st_ino
    with path.open("wb") as handle:  # the same file, the same size
        handle.write(new + b"\n")
    stamp = path.stat().st_mtime_ns + 1_000_000
    os.utime(path, ns=(stamp, stamp))
    assert path.stat().st_ino == inode
    assert Fernet(new).decrypt(box.seal({"a": "b"}))


def test_a_bad_key_is_named_by_its_place_and_never_shown(tmp_path: Path) -> None:
    good = Fernet.generate_key()
    key_file(tmp_path, good, b"not-a-fernet-key-but-secret")
    with pytest.raises(CellarError) as caught:
        SecretBox.from_home(tmp_path)
    assert "key 2 of" in caught.value.message
    assert "not-a-fernet" not in caught.value.message
    assert good.decode() not in caught.value.message


def test_a_key_file_write_replaces_it_whole_and_private(tmp_path: Path) -> None:
    key_file(tmp_path, Fernet.generate_key())
    keys = [Fernet.generate_key(), Fernet.generate_key()]
    KeyRing(tmp_path).write(keys)
    assert KeyRing(tmp_path).keys() == keys
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]
