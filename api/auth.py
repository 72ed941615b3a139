"""Who is asking, and whether they may: run before every request's handler.

Every route needs a token in ``X-Auth-Token`` but ``/`` (the API's versions), the
OpenAPI document, the identity API's version documents and ``POST /auth/tokens``. A
missing, expired or revoked token is a 401; a token of another project than the path's
is a 403 (an admin may act in every project); a ``reader`` may only read. The identity
API's own routes say themselves who may use them (``api.identity.access``), and so does
``/metrics`` (``api.prometheus``), which Prometheus reads with a scrape token of its
own, and the dashboard's pages under ``/dashboard`` (``api.dashboard``), which keep the
token in a session cookie and send a CSRF token with every form.

Browser safety comes first: a body must be ``application/json`` (415 otherwise), and
the ``Host`` header must name this Cellar, so a web page cannot make a browser, or a
port of this host, act on it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
from typing import Protocol

from flask import Flask, g, request

from api.token_cache import CachedValidator
from cellar.db import Database
from cellar.errors import Forbidden, InvalidInput, Unauthorized, UnsupportedMedia
from cellar.identity import store
from cellar.identity.store import Identity
from cellar.identity.tokens import TokenSealer
from cellar.models import utcnow
from cellar.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 - a header name
PUBLIC = {
    ("GET", "/"),
    ("GET", "/v1.0/"),
    ("GET", "/v1.0/openapi.json"),
    ("GET", "/healthcheck"),
    ("GET", "/identity"),
    ("GET", "/identity/"),
    ("GET", "/identity/v3"),
    ("GET", "/identity/v3/"),
    ("POST", "/identity/v3/auth/tokens"),
}
OWN_CHECK = {("GET", "/metrics")}  # the route checks who asks itself: api.prometheus
READS = ("GET", "HEAD", "OPTIONS")
DASHBOARD = "/dashboard"  # web pages with a session cookie: api.dashboard checks them
WITH_BODY = ("POST", "PUT", "PATCH")


class Validator(Protocol):
    """Turns a token into who it is for, or raises ``Unauthorized``."""

    def validate(self, token: str) -> Identity: ...


@dataclasses.dataclass
class LocalValidator:
    """Validates the tokens of Cellar's own identity API against its metadata."""

    db: Database
    sealer: TokenSealer

    def epoch(self) -> int:
        with self.db.engine.connect() as connection:  # plainer than a session: every request
            return store.epoch(connection)

    def validate(self, token: str) -> Identity:
        sealed = self.sealer.open(token, utcnow())
        with self.db.session() as session:
            return store.resolve(session, sealed)


@dataclasses.dataclass
class Auth:
    """What the API checks requests with; ``create_app`` keeps one in its extensions."""

    settings: Settings
    validator: Validator
    sealer: TokenSealer | None  # None when a Keystone issues the tokens
    enabled: bool = True  # only benchmarks turn it off, to measure what it costs

    def is_admin(self, identity: Identity) -> bool:
        return identity.has("admin") and identity.project_name == self.settings.admin_project

    @functools.cached_property
    def hosts(self) -> frozenset[str]:
        """The names a ``Host`` header may give (worked out once, not per request)."""
        return frozenset(self.allowed_hosts())

    def allowed_hosts(self) -> set[str]:
        names = {"localhost", "127.0.0.1", "::1", socket.gethostname().lower()}
        names |= {self.settings.api_host, self.settings.advertise_host, self.settings.publish_host}
        names |= set(self.settings.allowed_hosts)
        return {n.lower() for n in names} - {"0.0.0.0", "::", ""}  # noqa: S104


def auth_for(settings: Settings, db: Database) -> Auth:
    """Local validation with Cellar's own identity API (remembered for ``token_cache.KEEP``
    seconds), or a Keystone's if one is set."""
    if settings.own_identity:
        sealer = TokenSealer.from_home(settings.home)
        local = LocalValidator(db, sealer)
        return Auth(settings, CachedValidator(local, epoch=local.epoch), sealer)
    from api.keystone import KeystoneValidator

    return Auth(settings, KeystoneValidator(settings), None)


def current(app: Flask | None = None) -> Auth:
    from flask import current_app

    found: Auth = (app or current_app).extensions["cellar_auth"]
    return found


def host_of(header: str) -> str:
    """The host name of a ``Host`` header, without its port (IPv6 brackets removed)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def check_request(auth: Auth) -> None:
    """Browser safety, then who is asking and whether they may: raises to refuse."""
    allowed = auth.hosts
    if host_of(request.host) not in allowed:
        names = ", ".join(sorted(allowed))
        raise InvalidInput(
            f"Host {request.host!r} is not a name this Cellar serves ({names}); "
            "set CELLAR_ALLOWED_HOSTS to add one"
        )
    if request.path == DASHBOARD or request.path.startswith(f"{DASHBOARD}/"):
        g.identity = None
        return  # the dashboard's pages check their session cookie and CSRF token themselves
    if request.method in WITH_BODY and _has_body() and request.mimetype != "application/json":
        raise UnsupportedMedia(
            f"the request body must be JSON sent as Content-Type: application/json, "
            f"not {request.mimetype or 'no content type'}"
        )
    g.identity = None
    method = "GET" if request.method == "HEAD" else request.method  # HEAD is GET, bodiless
    asked = (method, request.path)
    if not auth.enabled or asked in PUBLIC or asked in OWN_CHECK:
        return
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise Unauthorized(
            f"this route needs a token in {TOKEN_HEADER}; get one with "
            f"POST {auth.settings.identity_url}/auth/tokens"
        )
    g.identity = auth.validator.validate(token)
    project = (request.view_args or {}).get("project_id")
    if project is not None:
        authorize_project(auth, g.identity, str(project))


def authorize_project(auth: Auth, identity: Identity, project: str) -> None:
    """May ``identity`` do this request's method in ``project``?"""
    admin = auth.is_admin(identity)
    if identity.project_id != project and not admin:
        raise Forbidden(
            f"the token is for project {identity.project_id}, not {project}: "
            "ask for a token of that project"
        )
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    if rule.startswith("/v1.0/<project_id>/mgmt/") and not admin:
        raise Forbidden("management routes need the admin role on the admin project")
    if request.method in READS:
        if not identity.has("reader"):
            raise Forbidden("reading needs the reader role (or member, or admin)")
    elif not identity.has("member"):
        raise Forbidden(
            f"{request.method} needs the member role on the project; "
            f"the token has {', '.join(identity.roles)}"
        )
    g.cross_project = identity.project_id != project


def _has_body() -> bool:
    length = request.content_length
    return bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
