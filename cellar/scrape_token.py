"""The token Prometheus reads ``GET /metrics`` with, as ``Authorization: Bearer <token>``.

``CELLAR_METRICS_TOKEN`` sets it. Otherwise it is the file ``metrics-token`` in
``CELLAR_HOME``, made on first need with a random token and readable by its owner alone;
point Prometheus' ``authorization.credentials_file`` at it, or copy it from there.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from cellar.errors import CellarError
from cellar.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_FILE = "metrics-token"  # noqa: S105 - a file name


def token_path(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def scrape_token(settings: Settings) -> str:
    """The scrape token: the setting's, or the file's (made now if there is none)."""
    if settings.metrics_token:
        return settings.metrics_token
    path = token_path(settings)
    if not path.exists():
        _make(path)
    token = path.read_text().strip()
    if not token:
        raise CellarError(f"{path} is empty: put a token in it, or delete it to have one made")
    return token


def _make(path: Path) -> None:
    """Write a new token beside ``path`` and link it into place, so that a process that
    reads the file never sees it half written, and two that make it at once keep one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        os.link(scratch, path)
        logger.info("made the scrape token for /metrics in %s", path)
    except FileExistsError:  # another process made it first: keep that one
        pass
    finally:
        scratch.unlink()
