"""Cellar's own Keystone-v3-compatible identity API, under ``/identity/v3``.

Served only when no external Keystone is set (``CELLAR_AUTH_URL`` empty). It covers what
the stock ``openstack`` CLI uses for tokens, projects, users, roles and their
assignments, and application credentials, with one domain, ``Default``.
"""

from __future__ import annotations

from flask import Flask, Response, request

from api import auth, token_cache
from api.identity import credentials, directory, discovery, roles, tokens
from api.identity.views import BASE
from api.state import services
from cellar.identity import store

CHANGES = ("POST", "PUT", "PATCH", "DELETE")
LOGIN = ("POST", f"{BASE}/auth/tokens")


def install(app: Flask) -> None:
    for module in (discovery, tokens, directory, roles, credentials):
        app.register_blueprint(module.blueprint)
    app.after_request(_forget_tokens)


def _forget_tokens(response: Response) -> Response:
    """After a change to identities (a token revoked, a role taken away, a user or
    project disabled, ...), tokens that any API process validated are validated again:
    the epoch moves, and this process forgets at once."""
    path = request.path
    if request.method in CHANGES and path.startswith(BASE) and (request.method, path) != LOGIN:
        if response.status_code < 400:
            with services().db.session() as session:
                store.bump_epoch(session)
        token_cache.forget(auth.current().validator)
    return response
