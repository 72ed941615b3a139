from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cellar import names
from cellar.errors import CellarError, InvalidInput
from cellar.secrets import SecretBox, load_key


@pytest.mark.parametrize("good", ["shop", "_x", "A1_b2", "a" * 63])
def test_good_identifiers_pass(good: str) -> None:
    assert names.check_identifier("database", good) == good


@pytest.mark.parametrize(
    "bad", ["", "1abc", "a-b", "a b", "a'b", 'a"b', "a;b", "a" * 64, "é", None, 5, "pg_x"]
)
def test_bad_identifiers_are_refused_with_the_rule(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        names.check_identifier("database", bad)
    assert "database name" in caught.value.message


def test_reserved_names_are_refused_whatever_their_case() -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        names.check_identifier("user", "Postgres", frozenset({"postgres"}))


@pytest.mark.parametrize("bad", ["", None, "x" * 129, "tab\there", "nul\x00"])
def test_bad_passwords_are_refused_without_echo(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        names.check_password(bad)
    if isinstance(bad, str) and bad:
        assert bad not in caught.value.message


def test_secret_box_round_trip_and_wrong_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CELLAR_SECRET_KEY", raising=False)
    key = load_key(tmp_path)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == key
    box = SecretBox(key)
    sealed = box.seal({"user:al": "pw-of-al-8c1f"})
    assert b"pw-of-al" not in sealed and b"user:al" not in sealed
    assert box.open(sealed) == {"user:al": "pw-of-al-8c1f"}
    with pytest.raises(CellarError, match="cannot be decrypted"):
        SecretBox(Fernet.generate_key()).open(sealed)
