"""Validation of names and passwords that end up in an engine's SQL.

Used twice: by the API, to refuse bad input with a clear message, and by the
guest agent, which never trusts its caller. Names are also quoted where they
are used; this check is the first of two fences.
"""

from __future__ import annotations

import re

from cellar.errors import InvalidInput

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
IDENTIFIER_RULE = "1 to 63 characters: letters, digits and underscores, not starting with a digit"
PASSWORD_MAX = 128


def check_identifier(kind: str, value: object, reserved: frozenset[str] = frozenset()) -> str:
    """Return ``value`` if it is a valid database or user name, else raise InvalidInput."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{kind} name is required and must be a string ({IDENTIFIER_RULE})")
    if not IDENTIFIER.fullmatch(value):
        raise InvalidInput(f"{kind} name {value!r} is not allowed: use {IDENTIFIER_RULE}")
    if value.lower() in reserved or value.lower().startswith("pg_"):
        raise InvalidInput(f"{kind} name {value!r} is reserved by the datastore")
    return value


def check_password(value: object, kind: str = "user") -> str:
    """Return ``value`` if it is an acceptable password; the message never echoes it."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{kind} password is required and must be a non-empty string")
    if len(value) > PASSWORD_MAX:
        raise InvalidInput(f"{kind} password must be at most {PASSWORD_MAX} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{kind} password must not contain control characters")
    return value
