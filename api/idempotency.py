"""``Idempotency-Key`` on the requests that create something.

A client that sends ``Idempotency-Key: <key>`` with a create (an instance, replicas, a
backup, a configuration group, a backup strategy) and retries it, after a timeout or a
5xx, gets the same resource back, never a second one: its current view, with the first
answer's status and ``Idempotent-Replayed: true``. The handler claims the key in the
very transaction that creates the resource (a key is unique per project), so of two
concurrent requests with one key, one creates and the other, once the first has
committed, answers with what the first made. A key sent again with another request
(method, path or body) is refused with 422. Keys are kept for a day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.state import services
from cellar.errors import InvalidInput, Unprocessable
from cellar.models import IdempotencyKey, utcnow

HEADER = "Idempotency-Key"
KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII
KEPT = dt.timedelta(days=1)

Render = Callable[[Session, str], dict[str, Any]]
F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


class Replay(Exception):
    """Another request with this key created its resource first."""


@dataclasses.dataclass(frozen=True)
class Pending:
    project_id: str
    key: str
    fingerprint: str
    kind: str
    status: int


def _fingerprint() -> str:
    data = request.get_json(silent=True)
    payload = (
        json.dumps(data, sort_keys=True) if data is not None else request.get_data(as_text=True)
    )
    text = f"{request.method} {request.path}\n{payload}"
    return hashlib.sha256(text.encode()).hexdigest()


def _key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY.fullmatch(key):
        raise InvalidInput(f"{HEADER} must be 1 to 255 visible ASCII characters")
    return key


def idempotent(kind: str, status: int, render: Render) -> Callable[[F], F]:
    """Make a create handler honour ``Idempotency-Key``; it calls :func:`claim` in the
    transaction that creates the resource, and ``render`` shows that resource again."""

    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def run(project_id: str, **kwargs: Any) -> ResponseReturnValue:
            key = _key()
            if key is None:
                return handler(project_id, **kwargs)
            pending = Pending(project_id, key, _fingerprint(), kind, status)
            known = _replay(pending, render)
            if known is not None:
                return known
            g.idempotency = pending
            try:
                return handler(project_id, **kwargs)
            except Replay:
                found = _replay(pending, render)
                if found is None:
                    raise
                return found

        return run  # type: ignore[return-value]

    return wrap


def claim(session: Session, resource_id: str) -> None:
    """Bind the request's key to the resource it creates, in the creating transaction.

    Call it before anything else is written: a concurrent request with the same key then
    waits here, and raises :class:`Replay` once the first has committed."""
    pending: Pending | None = g.get("idempotency")
    if pending is None:
        return
    now = utcnow()
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.project_id == pending.project_id, IdempotencyKey.created < now - KEPT
        )
    )
    session.add(
        IdempotencyKey(
            project_id=pending.project_id, key=pending.key, fingerprint=pending.fingerprint,
            method=request.method, path=request.path[:512], kind=pending.kind,
            resource_id=resource_id, status_code=pending.status, request_id=g.request_id,
            created=now,
        )
    )  # fmt: skip
    try:
        session.flush()
    except IntegrityError as exc:
        raise Replay(f"{HEADER} {pending.key} was claimed by another request") from exc


def _replay(pending: Pending, render: Render) -> ResponseReturnValue | None:
    with services().db.session() as session:
        row = session.get(IdempotencyKey, (pending.project_id, pending.key))
        if row is None or row.created < utcnow() - KEPT:
            return None
        if row.fingerprint != pending.fingerprint or row.kind != pending.kind:
            raise Unprocessable(
                f"{HEADER} {pending.key!r} was first sent with another request "
                f"({row.method} {row.path}); use a new key for a new request"
            )
        body = render(session, row.resource_id)
        status = row.status_code
    response = jsonify(body)
    response.status_code = status
    response.headers["Idempotent-Replayed"] = "true"
    return response
