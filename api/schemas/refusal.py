"""Checking a request's body with its model, and saying why one is refused.

``parse(Model)`` is the first check of a route's body; a refusal is ``InvalidInput``
(400, in Trove's shape) with one sentence that names the first wrong member and what it
may be, worked out from the model's JSON schema, e.g. ``instance.volume.size must be an
integer, or a string holding one``. Values are never echoed: some are passwords.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import request
from pydantic import ValidationError

from api.schemas.base import Request
from cellar.errors import InvalidInput

Schema = dict[str, Any]
Loc = tuple[str | int, ...]
NOT_AN_OBJECT = "the request body must be a JSON object"
TYPE_ERRORS = ("model_type", "model_attributes_type", "dict_type", "missing")


def parse(model: type[Request]) -> dict[str, Any]:
    """The request's JSON object once ``model`` has taken it: as sent, or its wrapper's
    member (``{"instance": {...}}`` gives the inner object); InvalidInput if refused."""
    data = request.get_json(silent=True, force=True)
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(refusal(model, exc)) from exc
    assert isinstance(data, dict)  # a model of a whole body takes only an object
    return data if model.wrapper is None else data[model.wrapper]


def refusal(model: type[Request], exc: ValidationError) -> str:
    """One sentence on the first member that ``model`` refused."""
    schema = _schema(model)
    first, (path, where, parent) = _deepest(schema, exc.errors())
    kind = first["type"]
    if not path:
        return NOT_AN_OBJECT if kind in TYPE_ERRORS else _said(first)
    if path == (model.wrapper,) and kind in TYPE_ERRORS:
        return f'the request body must be {{"{model.wrapper}": {{...}}}}'
    name = _name(path)
    if kind == "extra_forbidden":
        takes = _listed(list(parent.get("properties", {})), "and")
        return f"{name} is not known here: {_name(path[:-1]) or 'the body'} takes {takes}"
    if kind in ("value_error", "assertion_error"):
        return f"{name} {_said(first)}"
    expects = describe(where, schema)
    if kind == "missing":
        return f"{name} is required: {expects}"
    if first.get("input") is None:
        if path[-1] in parent.get("required", ()):
            return f"{name} is required: {expects}"
        return f"{name} must be {expects}, or left out"
    return f"{name} must be {expects}"


def describe(schema: Schema, root: Schema) -> str:
    """What a value of ``schema`` may be, in words: its description, or its type."""
    if "description" in schema:
        return str(schema["description"])
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return _either(schema["anyOf"], root)
    if "enum" in schema:
        values = [json.dumps(v) for v in schema["enum"]]
        return values[0] if len(values) == 1 else f"one of {_listed(values, 'or')}"
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return "a string" + _bounds(schema, "minLength", "maxLength", " characters")
    if kind == "integer":
        return "an integer" + _bounds(schema, "minimum", "maximum", "")
    if kind == "number":
        return "a number"
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    if kind == "array":
        items = _resolve(schema.get("items", {}), root)
        plural = {"string": "strings", "integer": "integers", "object": "objects"}
        each = plural.get(items.get("type", ""), "")
        if each == "objects" and items.get("properties"):
            each += " with " + _listed(list(items["properties"]), "and")
        return f"a list of {each}" if each else "a list"
    if kind == "object":
        members = list(schema.get("properties", {}))
        return "an object with " + _listed(members, "and") if members else "an object"
    return "any value"


def _either(members: list[Schema], root: Schema) -> str:
    """What one of ``members`` may be; their plain values (``"async"``, true, null) in one
    list: ``one of "async", "sync" or null``."""
    parts: list[str] = []
    values: list[object] = []
    for member in members:
        plain = _resolve(member, root) if "description" not in member else member
        found = _values(plain)
        if found is None:
            parts.append(describe(member, root))
            continue
        if not values:
            parts.append("")  # the values go where the first of them was
        values.extend(found)
    if values:
        words = [json.dumps(v) for v in dict.fromkeys(values)]
        some = any(isinstance(v, str) for v in values)
        parts[parts.index("")] = ("one of " if some else "") + _listed(words, "or")
    return _listed(list(dict.fromkeys(parts)), "or")


def _values(schema: Schema) -> list[object] | None:
    """The values a schema of plain values allows (an enum, true and false, null), or None."""
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    if schema.get("type") == "boolean":
        return [True, False]
    if schema.get("type") == "null":
        return [None]
    return None


@functools.cache
def _schema(model: type[Request]) -> Schema:
    return model.model_json_schema()


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _step(schema: Schema, key: str | int, root: Schema) -> tuple[Schema, Schema] | None:
    """The schema of ``key`` inside ``schema``, and the object schema holding it; None when
    ``key`` is not a member there (pydantic's name of a union's member, e.g. ``str``)."""
    schema = _resolve(schema, root)
    for member in schema.get("anyOf", ()):
        found = _step(member, key, root)
        if found is not None:
            return found
    if isinstance(key, int):
        items = schema.get("items")
        return (items, schema) if items is not None else None
    properties = schema.get("properties", {})
    if key in properties:
        return properties[key], schema
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and schema.get("type") == "object":
        return extra, schema
    return None


def _deepest(root: Schema, errors: list[Any]) -> tuple[Any, tuple[Loc, Schema, Schema]]:
    """The first error, or one further inside the member it names: of a union such as
    ``list | object``, the error of the form that was nearly right."""
    walked = [(e, _walk(root, e["loc"], unknown=e["type"] == "extra_forbidden")) for e in errors]
    first = walked[0][1][0]
    inside = [w for w in walked if w[1][0][: len(first)] == first]
    return max(inside, key=lambda w: len(w[1][0]))


def _walk(root: Schema, loc: Loc, unknown: bool = False) -> tuple[Loc, Schema, Schema]:
    """The members of ``loc`` that are the body's (not pydantic's names of union members),
    the schema at its end, and the object schema that holds that last member; with
    ``unknown``, the last member of ``loc`` is one the model does not know."""
    path: list[str | int] = []
    where, parent = root, root
    for number, key in enumerate(loc, 1):
        found = _step(where, key, root)
        if found is None and unknown and number == len(loc):
            found = {}, where
        if found is None:
            continue
        path.append(key)
        where, parent = found
    return tuple(path), where, _resolve(parent, root)


def _name(path: Loc) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else key
    return text


def _listed(words: list[str], last: str) -> str:
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _bounds(schema: Schema, low_key: str, high_key: str, unit: str) -> str:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is not None and high is not None:
        return f" of {low} to {high}{unit}" if unit else f" from {low} to {high}"
    if high is not None:
        return f" of at most {high}{unit}"
    if low is not None:
        return f" of at least {low}{unit}"
    return ""


def _said(error: Any) -> str:
    """The words of a check of a model's own (a ``ValueError`` it raised)."""
    reason = error.get("ctx", {}).get("error")
    return str(reason) if reason is not None else str(error["msg"]).lower()
