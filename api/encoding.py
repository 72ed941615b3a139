"""JSON for the API's answers, encoded with orjson: a page of a thousand instances is
over a megabyte, which the standard library's encoder takes most of a request to write."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import orjson
from flask import Flask, Response
from flask.json.provider import JSONProvider


def _other(value: Any) -> Any:
    """What orjson does not know itself, as Flask's own provider writes it."""
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class FastJSON(JSONProvider):
    """Keeps the keys in the order the views put them; non-string keys become strings."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.dump_bytes(obj).decode()

    def dump_bytes(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_other, option=orjson.OPT_NON_STR_KEYS)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(self.dump_bytes(obj), mimetype="application/json")


def install(app: Flask) -> None:
    app.json = FastJSON(app)
