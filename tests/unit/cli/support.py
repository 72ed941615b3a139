"""A fake cloud for the CLI's tests: a ``requests.Session`` that answers as a Keystone v3
identity API and a Cellar API would, and records every request it gets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

AUTH_URL = "http://id.test:5000/v3"
API = "http://db.test:8779/v1.0"
PASSWORD = "pa55-word-not-shown"
SECRET = "app-secret-not-shown-either"


@dataclasses.dataclass
class Sent:
    method: str
    url: str
    params: dict[str, Any]
    body: Any
    headers: dict[str, str]

    @property
    def token(self) -> str | None:
        return self.headers.get("X-Auth-Token")


def reply(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = b"" if body is None else json.dumps(body).encode()
    answer.headers = CaseInsensitiveDict(headers or {})
    return answer


class FakeCloud(requests.Session):
    """Logs in anyone with ``PASSWORD`` or ``SECRET``; answers other calls from
    ``answers`` (``(method, url)`` to ``(status, body)``), refusing unknown tokens."""

    def __init__(self, project_id: str = "p-1", ttl: float = 3600.0) -> None:
        super().__init__()
        self.project_id = project_id
        self.ttl = ttl
        self.catalog = True
        self.accept = True  # False: every token is refused, as after a revocation
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.sent: list[Sent] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        verify: str | bool = True,
    ) -> requests.Response:
        sent = Sent(method, url, dict(params or {}), json, dict(headers or {}))
        self.sent.append(sent)
        if url == f"{AUTH_URL}/auth/tokens":
            return self._tokens(sent)
        if sent.token not in self.valid or not self.accept:
            return reply(401, {"error": {"code": 401, "message": "The request needs a token."}})
        status, body = self.answers.get((method, url), (404, {"itemNotFound": {"message": url}}))
        return reply(status, body)

    def logins(self) -> list[Sent]:
        return [s for s in self.sent if s.method == "POST" and s.url.endswith("/auth/tokens")]

    def calls(self, host: str = "db.test") -> list[Sent]:
        return [s for s in self.sent if urlsplit(s.url).hostname == host]

    def _tokens(self, sent: Sent) -> requests.Response:
        if sent.method == "DELETE":
            self.valid.discard(sent.headers.get("X-Subject-Token", ""))
            return reply(204)
        identity = sent.body["auth"]["identity"]
        method = identity["methods"][0]
        given = (
            identity["password"]["user"]["password"]
            if method == "password"
            else identity["application_credential"]["secret"]
        )
        if given not in (PASSWORD, SECRET):
            refused = {"code": 401, "message": "The request you have made requires authentication."}
            return reply(401, {"error": refused})
        value = f"tok-{len(self.issued) + 1}"
        self.issued.append(value)
        self.valid.add(value)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.ttl)
        body: dict[str, Any] = {
            "methods": [method],
            "user": {"id": "u-1", "name": "alice", "domain": {"id": "default"}},
            "project": {"id": self.project_id, "name": "shop", "domain": {"id": "default"}},
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "catalog": [],
        }
        if self.catalog:
            endpoints = [
                {"interface": face, "region_id": "RegionOne", "url": f"{where}/{self.project_id}"}
                for face, where in (("internal", "http://internal.test/v1.0"), ("public", API))
            ]
            body["catalog"] = [{"type": "database", "name": "trove", "endpoints": endpoints}]
        return reply(201, {"token": body}, {"X-Subject-Token": value})


class RecordingClient:
    """Stands in for :class:`cellar.cli.client.Client`: records each call and answers
    ``answers[(method, path)]``, else ``default``."""

    def __init__(
        self, default: Any = None, answers: dict[tuple[str, str], Any] | None = None
    ) -> None:
        self.default = default
        self.answers = answers or {}
        self.sent: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.sent.append((method, path, body))
        return self.answers.get((method, path), self.default)
