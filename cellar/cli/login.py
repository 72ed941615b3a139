"""Logging in to a Keystone v3 identity API (Cellar's own, or a real Keystone) the way
the OpenStack CLIs do: from the ``OS_*`` variables or the matching ``--os-*`` options,
with a password or an application credential.

:class:`Keystone` hands out a token: the kept one while it is good, else a new one,
which it keeps (``cellar.cli.tokens``). No password, secret or token is ever printed
or logged.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import requests

from cellar.cli.errors import LoginError
from cellar.cli.tokens import Token, TokenCache, parse_time, utcnow

logger = logging.getLogger(__name__)

PASSWORD = "password"  # noqa: S105 - the name of an auth type
APP_CREDENTIAL = "v3applicationcredential"
AUTH_TYPES = {"password": PASSWORD, "v3password": PASSWORD, APP_CREDENTIAL: APP_CREDENTIAL}
SUBJECT = "X-Subject-Token"
TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 - a header name
SECRETS = ("password", "application_credential_secret")
OPTIONS = (  # each is --os-<name> and OS_<NAME>
    ("auth_url", "the identity API, e.g. http://127.0.0.1:8779/identity/v3"),
    ("auth_type", f"{PASSWORD} (default) or {APP_CREDENTIAL}"),
    ("username", None),
    ("user_id", None),
    ("password", "default: asked on a terminal"),
    ("user_domain_name", "default: Default"),
    ("user_domain_id", None),
    ("project_name", None),
    ("project_id", None),
    ("project_domain_name", "default: Default"),
    ("project_domain_id", None),
    ("application_credential_id", None),
    ("application_credential_name", "with --os-username"),
    ("application_credential_secret", "default: asked on a terminal"),
    ("interface", "the catalog's endpoint to use (default: public)"),
    ("region_name", None),
    ("cacert", "the CA to check an https API with (Cellar's is CELLAR_HOME/ca.crt)"),
)

Asker = Callable[[str], str]


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging in (each defaults to its OS_* variable)")
    for name, text in OPTIONS:
        group.add_argument(
            "--os-" + name.replace("_", "-"),
            dest="os_" + name,
            metavar="SECRET" if name in SECRETS else name.rsplit("_", 1)[-1].upper(),
            help=text,
        )


def v3_url(auth_url: str) -> str:
    """The identity API's v3 root: ``OS_AUTH_URL`` with ``/v3`` added unless it ends so."""
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Who logs in where; secrets are never shown by ``repr``."""

    auth_url: str
    auth_type: str = PASSWORD
    username: str = ""
    user_id: str = ""
    password: str = dataclasses.field(default="", repr=False)
    user_domain_name: str = ""
    user_domain_id: str = ""
    project_name: str = ""
    project_id: str = ""
    project_domain_name: str = ""
    project_domain_id: str = ""
    application_credential_id: str = ""
    application_credential_name: str = ""
    application_credential_secret: str = dataclasses.field(default="", repr=False)
    interface: str = "public"
    region_name: str = ""
    cacert: str = ""  # a CA bundle for https, instead of the system's

    @classmethod
    def load(
        cls, args: argparse.Namespace, environ: Mapping[str, str], default_url: str = ""
    ) -> Credentials:
        """From the ``--os-*`` options, else the ``OS_*`` variables. With no auth URL,
        ``default_url`` (Cellar's ``--url``) is taken as serving its own identity API."""
        given: dict[str, str] = {}
        for name, _text in OPTIONS:
            value = getattr(args, "os_" + name, None) or environ.get("OS_" + name.upper(), "")
            if value.strip():
                given[name] = value.strip() if name not in SECRETS else value
        if "auth_url" not in given and default_url:
            given["auth_url"] = default_url.rstrip("/") + "/identity/v3"
        if "auth_url" not in given:
            raise LoginError(
                "say where to log in: set OS_AUTH_URL (or --os-auth-url), e.g. by sourcing "
                "the admin-openrc file that Cellar writes in CELLAR_HOME"
            )
        kind = given.get("auth_type", PASSWORD).lower()
        if kind not in AUTH_TYPES:
            raise LoginError(
                f"OS_AUTH_TYPE {kind!r} is not supported: use {PASSWORD} or {APP_CREDENTIAL}"
            )
        given["auth_type"] = AUTH_TYPES[kind]
        found = cls(**given)
        found.check()
        return found

    def check(self) -> None:
        if self.auth_type == APP_CREDENTIAL:
            if not self.application_credential_id and not (
                self.application_credential_name and (self.username or self.user_id)
            ):
                raise LoginError(
                    "an application credential login needs OS_APPLICATION_CREDENTIAL_ID, or "
                    "OS_APPLICATION_CREDENTIAL_NAME with OS_USERNAME"
                )
        elif not (self.username or self.user_id):
            raise LoginError("say who logs in: set OS_USERNAME (or --os-username)")

    @property
    def identity_url(self) -> str:
        return v3_url(self.auth_url)

    @property
    def secret_name(self) -> str:
        return "application credential secret" if self.auth_type == APP_CREDENTIAL else "password"

    @property
    def secret(self) -> str:
        if self.auth_type == APP_CREDENTIAL:
            return self.application_credential_secret
        return self.password

    def who(self) -> str:
        """The user (or application credential), in words."""
        if self.auth_type == APP_CREDENTIAL:
            return "application credential " + (
                self.application_credential_id or self.application_credential_name
            )
        return f"user {self.username or self.user_id}"

    def cache_key(self) -> str:
        """The token file's name part: a hash of identity API, user and project."""
        user = (self.user_id, self.username, self.user_domain_id, self.user_domain_name)
        if self.auth_type == APP_CREDENTIAL:
            scope: tuple[str, ...] = (
                self.application_credential_id,
                self.application_credential_name,
            )
        else:
            scope = (
                self.project_id,
                self.project_name,
                self.project_domain_id,
                self.project_domain_name,
            )
        text = "\n".join((self.identity_url, self.auth_type, *user, *scope))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _user(self) -> dict[str, Any]:
        if self.user_id:
            return {"id": self.user_id}
        return {
            "name": self.username,
            "domain": _domain(self.user_domain_id, self.user_domain_name),
        }

    def auth_body(self, secret: str) -> dict[str, Any]:
        """Keystone v3's ``POST /auth/tokens`` body."""
        if self.auth_type == APP_CREDENTIAL:
            credential: dict[str, Any] = {"secret": secret}
            if self.application_credential_id:
                credential["id"] = self.application_credential_id
            else:
                credential.update(name=self.application_credential_name, user=self._user())
            identity = {"methods": ["application_credential"], "application_credential": credential}
            return {"auth": {"identity": identity}}
        user = {**self._user(), "password": secret}
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
        if self.project_id:
            auth["scope"] = {"project": {"id": self.project_id}}
        elif self.project_name:
            domain = _domain(self.project_domain_id, self.project_domain_name)
            auth["scope"] = {"project": {"name": self.project_name, "domain": domain}}
        return {"auth": auth}


def _domain(domain_id: str, domain_name: str) -> dict[str, str]:
    if domain_id:
        return {"id": domain_id}
    return {"name": domain_name or "Default"}


class Keystone:
    """Tokens for ``credentials``: the kept one while it is good, else a new one.

    ``ask`` asks for a missing password or secret (None: it must be given). ``http`` is
    the ``requests.Session`` every call goes through (tests hand in a fake one).
    """

    def __init__(
        self,
        credentials: Credentials,
        http: requests.Session,
        cache: TokenCache | None,
        ask: Asker | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self.http = http
        self.cache = cache
        self.ask = ask
        self.timeout = timeout
        self.current: Token | None = None
        self.from_cache = False

    @property
    def key(self) -> str:
        return self.credentials.cache_key()

    @property
    def verify(self) -> str | bool:
        """What requests check the API's certificate with: the CA given, else the
        system's. Passed with each request, as requests lets ``REQUESTS_CA_BUNDLE``
        win over a session's own ``verify``."""
        return self.credentials.cacert or True

    def token(self) -> Token:
        """The one in hand until it expires; else the kept one while it is good for a
        while yet; else a new one."""
        if self.current is not None and self.current.usable(utcnow(), dt.timedelta(0)):
            return self.current
        kept = self.cache.load(self.key) if self.cache else None
        if kept is not None and kept.usable(utcnow()):
            logger.debug("using the kept token of %s", self.credentials.who())
            self.current, self.from_cache = kept, True
            return kept
        return self.login()

    def login(self) -> Token:
        """Log in anew and keep the token."""
        creds = self.credentials
        secret = creds.secret
        if not secret and self.ask is not None:
            secret = self.ask(f"{creds.secret_name} for {creds.who()}: ")
        if not secret:
            name = (
                "OS_PASSWORD" if creds.auth_type == PASSWORD else "OS_APPLICATION_CREDENTIAL_SECRET"
            )
            raise LoginError(f"no {creds.secret_name}: set {name}, or run 'cellar login'")
        url = f"{creds.identity_url}/auth/tokens"
        try:
            reply = self.http.request(
                "POST", url, json=creds.auth_body(secret), timeout=self.timeout, verify=self.verify
            )
        except requests.RequestException as exc:
            raise LoginError(f"cannot reach the identity API at {url}: {exc}") from exc
        if reply.status_code >= 400:
            raise LoginError(
                f"the identity API at {creds.identity_url} refused the login of "
                f"{creds.who()} (HTTP {reply.status_code}): {reason(reply)}"
            )
        value = reply.headers.get(SUBJECT, "")
        try:
            body = reply.json()["token"]
            parse_time(str(body["expires_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise LoginError(f"{url} answered no Keystone token") from exc
        if not value:
            raise LoginError(f"{url} answered no {SUBJECT} header")
        token = Token(value, body)
        if self.cache is not None:
            try:
                self.cache.save(self.key, token)
            except OSError as exc:
                logger.warning("cannot keep the token in %s: %s", self.cache.directory, exc)
        logger.debug("logged in %s", creds.who())
        self.current, self.from_cache = token, False
        return token

    def forget(self) -> None:
        """Drop the token in hand and the kept one (the next call logs in again)."""
        self.current = None
        self.from_cache = False
        if self.cache is not None:
            self.cache.drop(self.key)

    def logout(self) -> bool:
        """Revoke the kept token and remove its file; False when there was none."""
        kept = self.cache.load(self.key) if self.cache else self.current
        if kept is None:
            return False
        try:
            reply = self.http.request(
                "DELETE",
                f"{self.credentials.identity_url}/auth/tokens",
                headers={TOKEN_HEADER: kept.value, SUBJECT: kept.value},
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            raise LoginError(f"cannot reach the identity API: {exc}") from exc
        finally:
            self.forget()
        if reply.status_code >= 400 and reply.status_code not in (401, 404):
            status = reply.status_code
            raise LoginError(f"the token was not revoked (HTTP {status}): {reason(reply)}")
        return True


def reason(reply: requests.Response) -> str:
    """The message of an OpenStack error body (``{"error": {"message": ...}}`` and kin)."""
    try:
        data = reply.json()
    except ValueError:
        return reply.text[:500] or reply.reason or ""
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return str(data)[:500]
