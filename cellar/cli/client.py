"""A small HTTP client of Cellar's REST API for the CLI."""

from __future__ import annotations

from typing import Any

import requests


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Client:
    def __init__(self, url: str, project: str, timeout: float = 30.0) -> None:
        self.base = f"{url.rstrip('/')}/v1.0/{project}"
        self.timeout = timeout
        self.session = requests.Session()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            reply = self.session.request(method, self.base + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApiError(0, f"cannot reach Cellar at {self.base}: {exc}") from exc
        if reply.status_code >= 400:
            raise ApiError(reply.status_code, _message(reply))
        if not reply.content:
            return None
        return reply.json()


def _message(reply: requests.Response) -> str:
    try:
        data = reply.json()
    except ValueError:
        return reply.text[:500]
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return str(data)[:500]
