"""A small HTTP client of Cellar's REST API and of the identity API, for the CLI.

Every call carries a token from :class:`~cellar.cli.login.Keystone`. Cellar's URL is
the ``database`` endpoint of the token's catalog unless ``--url`` names it; the project
is the token's. A kept token that the API refuses (401) is dropped, and the call is
made once more with a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import requests

from cellar.cli.errors import ApiError, LoginError
from cellar.cli.login import TOKEN_HEADER, Keystone, reason
from cellar.cli.tokens import Token

__all__ = ["ApiError", "Client"]

logger = logging.getLogger(__name__)

Params = Mapping[str, str | int]


class Client:
    def __init__(self, keystone: Keystone, url: str = "", timeout: float = 30.0) -> None:
        self.keystone = keystone
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def token(self) -> Token:
        return self.keystone.token()

    @property
    def project_id(self) -> str:
        project = str(self.token.project.get("id") or "")
        if not project:
            raise LoginError(
                "the token is for no project: set OS_PROJECT_NAME or OS_PROJECT_ID "
                "(or --os-project-name)"
            )
        return project

    @property
    def user_id(self) -> str:
        return str(self.token.user["id"])

    @property
    def base(self) -> str:
        """Cellar's API for the token's project: ``--url`` or the catalog's endpoint."""
        if self.url:
            return f"{self.url}/v1.0/{self.project_id}"
        creds = self.keystone.credentials
        found = self.token.endpoint("database", creds.interface, creds.region_name)
        if found is None:
            raise LoginError(
                f"the token's catalog has no {creds.interface} database endpoint: "
                "give Cellar's URL with --url or CELLAR_URL"
            )
        return found

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: Params | None = None,
    ) -> Any:
        """A call of Cellar's API; ``path`` follows ``/v1.0/{project_id}``."""
        return self._send(method, lambda: self.base + path, body, params)

    def identity(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: Params | None = None,
    ) -> Any:
        """A call of the identity API; ``path`` follows its ``/v3``."""
        return self._send(
            method, lambda: self.keystone.credentials.identity_url + path, body, params
        )

    def _send(
        self,
        method: str,
        where: Callable[[], str],
        body: dict[str, Any] | None,
        params: Params | None,
    ) -> Any:
        for _attempt in range(2):
            token = self.keystone.token()
            url = where()
            try:
                reply = self.keystone.http.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers={TOKEN_HEADER: token.value, "Accept": "application/json"},
                    timeout=self.timeout,
                    verify=self.keystone.verify,
                )
            except requests.RequestException as exc:
                raise ApiError(0, f"cannot reach {url}: {exc}") from exc
            if reply.status_code != 401 or not self.keystone.from_cache:
                break
            logger.info("the kept token was refused; logging in again")
            self.keystone.forget()
        if reply.status_code >= 400:
            raise ApiError(reply.status_code, reason(reply))
        if not reply.content:
            return None
        try:
            return reply.json()
        except ValueError as exc:
            raise ApiError(reply.status_code, f"{method} {url} answered no JSON") from exc
