"""The web dashboard at ``/dashboard/``: server-rendered pages over Cellar's own API.

Pages are Flask and Jinja with htmx (shipped in ``static/``, nothing fetched at run time)
for the parts that refresh themselves. A person logs in with a user name and password
or an application credential; the token the identity API gives is kept in a signed,
HttpOnly, SameSite=Strict session cookie, and every form carries the session's CSRF
token. Pages ask the API through :mod:`api.dashboard.client`, never the metadata.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from api.dashboard import admin, debug_access, guard, login, stores, team  # noqa: F401
from api.dashboard.views import blueprint
from cellar.settings import Settings

KEY_FILE = "dashboard-session.key"


def session_key(home: Path) -> bytes:
    """The key the session cookies are signed with: one file in CELLAR_HOME (mode 0600),
    made by whichever API process needs it first, so every process signs alike."""
    path = home / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        key = secrets.token_bytes(32)
        handle.write(key)
    return key


def install(app: Flask, settings: Settings) -> None:
    app.secret_key = session_key(settings.home)
    app.config.update(
        SESSION_COOKIE_NAME="cellar_dashboard",
        SESSION_COOKIE_PATH="/dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.api_tls_files is not None,
    )
    app.register_blueprint(blueprint)
