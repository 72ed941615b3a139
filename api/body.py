"""Reading and checking request bodies; every message names the field and what is allowed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cellar.errors import InvalidInput


def text(data: dict[str, Any], field: str, *, required: bool = True, max_len: int = 255) -> str:
    value = data.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} is required and must be a non-empty string")
    if len(value) > max_len:
        raise InvalidInput(f"{field} must be at most {max_len} characters")
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{field} must not contain control characters")
    return value


def integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{field} must be an integer from {low} to {high}")
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}") from exc
    if not low <= number <= high:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}, got {number}")
    return number


def object_list(data: dict[str, Any], field: str, max_items: int = 50) -> list[dict[str, Any]]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput(f"{field} must be a list of objects")
    if len(value) > max_items:
        raise InvalidInput(f"{field} may hold at most {max_items} items")
    return value


EXAMPLE_TIME = "2026-11-25T09:30:00Z"


def moment(value: object, field: str, *, zone_required: bool = False) -> dt.datetime:
    """``value``, an RFC 3339 time, as a naive UTC datetime; one with no zone is taken as
    UTC unless ``zone_required``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an RFC 3339 time (ISO 8601), e.g. {EXAMPLE_TIME}")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{field} {value!r} is not an RFC 3339 time (ISO 8601), e.g. {EXAMPLE_TIME}"
        ) from exc
    if when.tzinfo is None:
        if zone_required:
            raise InvalidInput(f"{field} needs a time zone, e.g. {EXAMPLE_TIME}")
        return when
    return when.astimezone(dt.UTC).replace(tzinfo=None)
