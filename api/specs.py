"""Checks of the database and user lists that instance create, /databases and /users take."""

from __future__ import annotations

import re
from typing import Any

from cellar import names
from cellar.catalog import DatastoreVersion
from cellar.errors import Busy, InvalidInput

CHARSET = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
HOST = re.compile(r"[A-Za-z0-9.:%_-]{1,255}")


def databases(items: list[dict[str, Any]], version: DatastoreVersion) -> list[dict[str, str]]:
    """Validated ``[{"name", "character_set", "collate"}]``; duplicates refused."""
    if items and not version.has_databases:
        raise Busy(no_databases(version))
    result: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in items:
        name = names.check_identifier("database", item.get("name"), version.reserved_databases)
        if name in seen:
            raise InvalidInput(f"database {name!r} is listed twice")
        seen.add(name)
        entry = {"name": name}
        for field in ("character_set", "collate"):
            value = item.get(field)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not CHARSET.fullmatch(value):
                raise InvalidInput(f"database {field} must be a name such as UTF8 or en_US.UTF-8")
            entry[field] = value
        result.append(entry)
    return result


def user_host(value: object, name: str, version: DatastoreVersion) -> str:
    """The user's client host: '%' (any) unless the engine binds users to hosts."""
    host = value or ""
    if not isinstance(host, str):
        raise InvalidInput(f"user {name!r}: host must be a string such as '%' or '10.0.0.%'")
    if not version.has_user_hosts:
        if host not in ("", "%"):
            raise InvalidInput(
                f"user {name!r}: host {host!r} is not supported by {version.datastore}; "
                "leave it out or use '%'"
            )
        return host
    if host and not HOST.fullmatch(host):
        raise InvalidInput(
            f"user {name!r}: host {host!r} is not allowed; use '%', an address or a name, "
            "with % as a wildcard (letters, digits, '.', '-', ':', '%')"
        )
    return host or "%"


def users(
    items: list[dict[str, Any]], version: DatastoreVersion
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Validated users without passwords, and the passwords apart (for the secret store)."""
    result: list[dict[str, Any]] = []
    passwords: dict[str, str] = {}
    for item in items:
        name = names.check_identifier("user", item.get("name"), version.reserved_users)
        if f"user:{name}" in passwords:
            raise InvalidInput(f"user {name!r} is listed twice")
        passwords[f"user:{name}"] = names.check_password(item.get("password"), f"user {name!r}")
        host = user_host(item.get("host"), name, version)
        grants = item.get("databases") or []
        if not isinstance(grants, list) or not all(isinstance(g, dict) for g in grants):
            raise InvalidInput(f'user {name!r}: databases must be a list of {{"name": ...}}')
        if grants and not version.has_databases:
            raise Busy(no_databases(version))
        dbs = [
            names.check_identifier("database", g.get("name"), version.reserved_databases)
            for g in grants
        ]
        result.append({"name": name, "host": host, "databases": dbs})
    return result, passwords


def no_databases(version: DatastoreVersion) -> str:
    return (
        f"{version.datastore} has no named databases; leave databases out "
        "(users get access to the whole instance)"
    )
