"""Tokens, and the files that keep them between commands until shortly before they expire.

A token is kept in ``$XDG_CACHE_HOME/cellar/token-<key>.json`` (``~/.cache/cellar``
when that is not set), one file per identity API, user and project, readable by its
owner only (0600, in a 0700 folder). A file anyone else could read is not used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REFRESH_BEFORE = dt.timedelta(seconds=60)  # a token this close to its expiry is not used


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(raw: str) -> dt.datetime:
    """Keystone's ``2030-01-31T12:00:00.000000Z`` as an aware UTC time."""
    moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Token:
    """A token (``value``, sent in ``X-Auth-Token``) and Keystone's ``token`` object."""

    value: str = dataclasses.field(repr=False)
    body: dict[str, Any]

    @property
    def expires_at(self) -> dt.datetime:
        return parse_time(str(self.body["expires_at"]))

    @property
    def user(self) -> dict[str, Any]:
        return dict(self.body.get("user") or {})

    @property
    def project(self) -> dict[str, Any]:
        return dict(self.body.get("project") or {})

    def usable(self, now: dt.datetime, margin: dt.timedelta = REFRESH_BEFORE) -> bool:
        """Whether the token is good for ``margin`` yet (by default a minute)."""
        return self.expires_at - now > margin

    def endpoint(self, service: str, interface: str = "public", region: str = "") -> str | None:
        """The URL of ``service`` (a catalog type such as ``database``) in the catalog."""
        for entry in self.body.get("catalog") or []:
            if entry.get("type") != service:
                continue
            for point in entry.get("endpoints") or []:
                if point.get("interface") != interface:
                    continue
                if region and region not in (point.get("region_id"), point.get("region")):
                    continue
                return str(point["url"]).rstrip("/")
        return None


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/cellar``, or ``~/.cache/cellar`` (a relative XDG path is ignored)."""
    base = environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "cellar"


class TokenCache:
    """One token file per key (a hash of identity API, user and project)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"token-{key}.json"

    def load(self, key: str) -> Token | None:
        """The kept token, or None when there is none or its file cannot be trusted."""
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                    logger.warning("not using %s: others may read it", path)
                    self.drop(key)
                    return None
                data = json.loads(handle.read())
            body = dict(data["body"])
            parse_time(str(body["expires_at"]))  # a file without a readable expiry is not used
            token = Token(str(data["token"]), body)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("not using %s: %s", path, exc)
            return None
        return token

    def save(self, key: str, token: Token) -> Path:
        """Write the token (mode 0600, in a 0700 folder), replacing the file at once."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        path = self.path(key)
        scratch = path.with_name(f".{path.name}.{os.getpid()}")
        scratch.unlink(missing_ok=True)
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"token": token.value, "body": token.body}, handle)
        os.replace(scratch, path)
        return path

    def drop(self, key: str) -> bool:
        """Remove the key's file; whether there was one."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True
