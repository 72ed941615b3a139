"""Password hashes, sealed tokens and what roles include, without the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cellar.identity import store
from cellar.identity.passwords import check_password, hash_password
from cellar.identity.tokens import BadToken, Sealed, TokenSealer, new_audit_id
from cellar.models import utcnow

NOW = dt.datetime(2030, 5, 1, 12, 0, 0, 123456)


def sealed(**changes: object) -> Sealed:
    token = Sealed(
        user_id="u" * 32,
        project_id="p" * 32,
        methods=("password",),
        issued_at=NOW,
        expires_at=NOW + dt.timedelta(hours=1),
        audit_id=new_audit_id(),
    )
    return dataclasses.replace(token, **changes)  # type: ignore[arg-type]


def test_a_password_hash_is_salted_scrypt_and_checks_only_its_password() -> None:
    first, second = hash_password("pa55-Word"), hash_password("pa55-Word")
    assert first != second  # a new salt each time
    scheme, n, r, p, _salt, _digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert "pa55-Word" not in first
    assert check_password("pa55-Word", first) and check_password("pa55-Word", second)
    for wrong in ("pa55-word", "pa55-Word ", "", "pa55-Wor"):
        assert not check_password(wrong, first)


@pytest.mark.parametrize(
    "stored",
    [None, "", "plain-text", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$%%$%%"],
)
def test_a_missing_or_odd_hash_matches_nothing(stored: str | None) -> None:
    assert not check_password("plain-text", stored)


def test_a_sealed_token_opens_to_what_was_sealed_and_hides_it() -> None:
    sealer = TokenSealer([Fernet.generate_key()])
    token = sealed(methods=("password", "token"), app_credential_id="c" * 32)
    text = sealer.seal(token)
    assert "u" * 32 not in text and "p" * 32 not in text
    assert sealer.open(text, NOW) == token


def test_an_expired_tampered_or_foreign_token_does_not_open() -> None:
    key = Fernet.generate_key()
    sealer = TokenSealer([key])
    text = sealer.seal(sealed())
    assert sealer.open(text, NOW + dt.timedelta(minutes=59)).user_id == "u" * 32
    with pytest.raises(BadToken, match="expired"):
        sealer.open(text, NOW + dt.timedelta(hours=1))
    with pytest.raises(BadToken, match="not valid"):
        TokenSealer([Fernet.generate_key()]).open(text, NOW)
    with pytest.raises(BadToken, match="not valid"):
        sealer.open(text[:-4] + ("AAAA" if text[-4:] != "AAAA" else "BBBB"), NOW)
    for garbage in ("", "x", "gAAAAAB" + "A" * 100, "é"):
        with pytest.raises(BadToken):
            sealer.open(garbage, NOW)
    odd = Fernet(key).encrypt(b'{"u": "x"}').decode()  # ours, but not a token's payload
    with pytest.raises(BadToken, match="not valid"):
        sealer.open(odd, NOW)


def test_a_real_clock_token_round_trips_to_the_microsecond() -> None:
    sealer = TokenSealer([Fernet.generate_key()])
    now = utcnow()
    token = sealed(issued_at=now, expires_at=now + dt.timedelta(seconds=3600))
    assert sealer.open(sealer.seal(token), now).issued_at == now


@pytest.mark.parametrize(
    ("held", "gives"),
    [
        (("admin",), {"admin", "member", "reader"}),
        (("member",), {"member", "reader"}),
        (("reader",), {"reader"}),
        (("reader", "admin"), {"admin", "member", "reader"}),
        ((), set()),
    ],
)
def test_each_role_includes_the_ones_below_it(held: tuple[str, ...], gives: set[str]) -> None:
    assert store.implied(held) == gives
    identity = store.Identity(
        user_id="u",
        user_name="u",
        project_id="p",
        project_name="p",
        roles=held,
        role_ids=held,
        methods=("password",),
        issued_at=NOW,
        expires_at=NOW,
        audit_id="a",
    )
    assert {r for r in store.ROLES if identity.has(r)} == gives


@pytest.mark.parametrize(
    ("ref", "matches"),
    [
        (None, True),
        ({}, True),
        ({"name": "Default"}, True),
        ({"id": "default"}, True),
        ({"id": "default", "name": "Default"}, True),
        ({"name": "default"}, False),
        ({"id": "other"}, False),
        ("Default", False),
    ],
)
def test_only_the_default_domain_matches(ref: object, matches: bool) -> None:
    assert store.domain_matches(ref) is matches


def test_text_after_a_tokens_padding_makes_it_invalid(tmp_path: Path) -> None:
    """Base64 decoding would ignore what follows ``=``: such a text is refused, whatever
    the token's length."""
    sealer = TokenSealer.from_home(tmp_path)
    now = dt.datetime(2026, 1, 1)
    for size in range(12):  # payloads of every length modulo the padding
        token = Sealed("u" * size, "p", ("password",), now, now + dt.timedelta(hours=1), "a", "")
        text = sealer.seal(token)
        assert sealer.open(text, now).user_id == "u" * size
        for tail in ("x", "=", "==x", " "):
            with pytest.raises(BadToken):
                sealer.open(text + tail, now)
