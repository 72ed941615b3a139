"""Tokens: sealed with Fernet, so they are never stored; what they say is checked again
(revocation, enabled user and project, current roles) every time one is used.

A token seals who it is for (user, project, and the application credential it came
from, if any), how it was got, when it was issued and when it expires, and an audit
id: revoking a token records that id until the token would have expired anyway.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cellar.errors import Unauthorized
from cellar.secrets import load_key

KEY_FILE = "token.key"
SEALED_TEXT = re.compile(r"[A-Za-z0-9_-]+={0,2}")  # a Fernet token, urlsafe base64
KEY_ENV = "CELLAR_TOKEN_KEY"  # one key, or several separated by commas (the first seals)


class BadToken(Unauthorized):
    """The token (or the login) is not valid: not ours, expired, revoked, or wrong."""


@dataclasses.dataclass(frozen=True)
class Sealed:
    """What a token says."""

    user_id: str
    project_id: str
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    audit_id: str
    app_credential_id: str = ""

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires_at


def new_audit_id() -> str:
    return secrets.token_urlsafe(16)


class TokenSealer:
    """Seals and opens tokens with the key(s) of ``CELLAR_TOKEN_KEY`` or ``home/token.key``."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_home(cls, home: Path) -> TokenSealer:
        raw = load_key(home, KEY_FILE, KEY_ENV)
        return cls([key.strip().encode() for key in raw.decode().split(",") if key.strip()])

    def seal(self, token: Sealed) -> str:
        payload = {
            "u": token.user_id,
            "p": token.project_id,
            "m": list(token.methods),
            "i": token.issued_at.replace(tzinfo=dt.UTC).timestamp(),
            "e": token.expires_at.replace(tzinfo=dt.UTC).timestamp(),
            "a": token.audit_id,
            "c": token.app_credential_id,
        }
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, text: str, now: dt.datetime) -> Sealed:
        """What ``text`` says; BadToken if it is not ours or has expired."""
        if len(text) % 4 or not SEALED_TEXT.fullmatch(text):
            # base64 decoding stops at the padding: text after it would be ignored
            raise BadToken("the token is not valid")
        try:
            data = json.loads(self._fernet.decrypt(text.encode()))
            token = Sealed(
                user_id=str(data["u"]),
                project_id=str(data["p"]),
                methods=tuple(str(m) for m in data["m"]),
                issued_at=_naive(data["i"]),
                expires_at=_naive(data["e"]),
                audit_id=str(data["a"]),
                app_credential_id=str(data.get("c") or ""),
            )
        except (InvalidToken, ValueError, KeyError, TypeError) as exc:
            raise BadToken("the token is not valid") from exc
        if token.expired(now):
            raise BadToken("the token has expired")
        return token


def _naive(stamp: object) -> dt.datetime:
    """A UTC timestamp as the naive UTC datetimes the metadata keeps."""
    if not isinstance(stamp, int | float):
        raise TypeError(f"not a timestamp: {stamp!r}")
    return dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None)
