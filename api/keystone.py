"""Token validation against a real Keystone (the production profile, ``CELLAR_AUTH_URL``).

Cellar logs in to Keystone as its own service user (``CELLAR_AUTH_USERNAME``,
``CELLAR_AUTH_PASSWORD``, ``CELLAR_AUTH_PROJECT``) and asks it about each token it is
given (``GET /v3/auth/tokens``). A token Keystone found valid is taken as valid for
``CELLAR_AUTH_CACHE`` seconds (5 by default), so a revoked token stops working within
that time; Keystone's answer that a token is not valid is never cached.

Keystone lets a service validate other users' tokens when its user holds the
``service`` role (or ``admin``); when Keystone refuses Cellar that right, requests
fail with 503, not as if the caller's token were bad. A project is named as Keystone
names it, with ``@domain`` added outside the default domain, so ``CELLAR_ADMIN_PROJECT``
names the default domain's project unless it says otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from cellar.errors import Unauthorized, Unavailable
from cellar.identity.store import Identity
from cellar.models import utcnow
from cellar.settings import Settings

logger = logging.getLogger(__name__)

CACHE_MAX = 10_000
TIMEOUT = 10.0
DEFAULT_DOMAIN = "default"
VALIDATE_POLICY = "identity:validate_token"  # what Keystone names when it refuses Cellar


def _when(value: object) -> dt.datetime:
    text = str(value or "").replace("Z", "+00:00")
    moment = dt.datetime.fromisoformat(text)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def project_name(project: dict[str, Any]) -> str:
    """A project's name, with ``@domain`` when it is not in the default domain: a domain's
    admin can make a project of any name, so only the domain tells two ``admin`` apart."""
    name = str(project.get("name", ""))
    domain = project.get("domain") or {}
    if not name or domain.get("id", DEFAULT_DOMAIN) == DEFAULT_DOMAIN:
        return name
    return f"{name}@{domain.get('name') or domain.get('id')}"


def identity_of(token: dict[str, Any]) -> Identity:
    """Who a Keystone token body says its bearer is."""
    user, project = token.get("user") or {}, token.get("project") or {}
    roles = token.get("roles") or []
    credential = token.get("application_credential") or {}
    return Identity(
        user_id=str(user.get("id", "")),
        user_name=str(user.get("name", "")),
        project_id=str(project.get("id", "")),
        project_name=project_name(project),
        roles=tuple(str(r.get("name", "")) for r in roles),
        role_ids=tuple(str(r.get("id", "")) for r in roles),
        methods=tuple(str(m) for m in token.get("methods") or ()),
        issued_at=_when(token.get("issued_at")),
        expires_at=_when(token.get("expires_at")),
        audit_id=str((token.get("audit_ids") or [""])[0]),
        app_credential_id=str(credential.get("id", "")),
    )


class KeystoneValidator:
    """Asks a Keystone whether a token is valid, and who it is for."""

    def __init__(self, settings: Settings, session: Any = None) -> None:
        if session is None:
            auth = v3.Password(
                auth_url=settings.auth_url,
                username=settings.auth_username,
                password=settings.auth_password,
                project_name=settings.auth_project,
                user_domain_id=DEFAULT_DOMAIN,
                project_domain_id=DEFAULT_DOMAIN,
            )
            session = ks_session.Session(auth=auth, timeout=TIMEOUT)
        self.session = session
        self.url = settings.auth_url.rstrip("/") + "/auth/tokens"
        self.keep = settings.auth_cache
        self._seen: dict[str, tuple[float, Identity]] = {}
        self._lock = threading.Lock()

    def validate(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            found = self._seen.get(key)
        if found is not None and found[0] > now and found[1].expires_at > utcnow():
            return found[1]
        try:
            reply = self.session.get(
                self.url,
                headers={"X-Subject-Token": token},
                params={"nocatalog": "1"},
                authenticated=True,
                raise_exc=False,
            )
        except ks_exceptions.Unauthorized as exc:
            logger.error("Keystone at %s refuses Cellar's own login: %s", self.url, exc)
            raise Unavailable(
                "the identity service refuses Cellar's own login: an operator must check "
                "CELLAR_AUTH_USERNAME, CELLAR_AUTH_PASSWORD and CELLAR_AUTH_PROJECT"
            ) from exc
        except ks_exceptions.ClientException as exc:
            raise Unavailable(f"the identity service at {self.url} did not answer: {exc}") from exc
        if reply.status_code == 403 and VALIDATE_POLICY in reply.text:
            logger.error("Keystone at %s refuses %s to Cellar's user", self.url, VALIDATE_POLICY)
            raise Unavailable(
                f"the identity service refuses Cellar's user {VALIDATE_POLICY}: an operator must "
                "give CELLAR_AUTH_USERNAME the service role on CELLAR_AUTH_PROJECT"
            )
        if reply.status_code in (401, 403, 404):
            raise Unauthorized("the token is not valid (expired, revoked, or not a token)")
        if reply.status_code != 200:
            raise Unavailable(f"the identity service answered {reply.status_code} about a token")
        identity = identity_of(reply.json()["token"])
        with self._lock:
            if len(self._seen) >= CACHE_MAX:
                self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
            self._seen[key] = (now + self.keep, identity)
        return identity
