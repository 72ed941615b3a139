"""What every request model shares: the base classes and the small types that say what
a route takes as it reads it today.

A model is the first check of a body, and only a first check: it refuses what the route
would refuse anyway, and never what the route takes. So a model lets through members it
does not know (the route refuses them if it must, with its own message: ``closed`` only
documents that), and leaves to the route the checks whose words clients and tests rely
on (``route_requires``, ranges given with ``documented``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

#: an integer, or a string holding one, as ``api.body.integer`` reads it
IntLike = Annotated[StrictInt | StrictStr, Field(description="an integer, or a string holding one")]


def optional(**field: Any) -> Any:
    """A member that may be left out, but not be null: the route refuses null."""
    return Field(None, **field)


def documented(default: Any = None, **schema: Any) -> Any:
    """A field's constraints for the document only: the route checks them after the model,
    with a message that says more (``maxItems=50``, ``minimum=1``)."""
    return Field(default, json_schema_extra=schema)


def null_defaults_left_out(schema: dict[str, Any]) -> None:
    """No ``"default": null`` on a member that may not be null: it may be left out, that is
    all (a document with such a default is not valid OpenAPI)."""
    for member in schema.get("properties", {}).values():
        if "default" in member and member["default"] is None and not _takes_null(member):
            del member["default"]


def _takes_null(schema: dict[str, Any]) -> bool:
    kinds = [schema, *schema.get("anyOf", ())]
    return not any(k in schema for k in ("type", "anyOf", "$ref", "enum", "const")) or any(
        k.get("type") == "null" or None in k.get("enum", ()) for k in kinds
    )


def _document(schema: dict[str, Any], model: type[Any]) -> None:
    """The model's schema with what its route checks after it: required members, no others,
    and the members whose false values (``""``, ``0``, ``false``, ...) are taken as left out."""
    null_defaults_left_out(schema)
    required = list(schema.get("required", [])) + list(model.route_requires)
    if required:
        schema["required"] = list(dict.fromkeys(required))
    if model.closed:
        schema["additionalProperties"] = False
    schema.update(model.schema_extra)
    for name in model.blank_is_unset:
        member = schema.get("properties", {}).get(name)
        if member is not None:
            note = 'a false value (null, false, 0, "", [] or {}) leaves it out'
            member["description"] = f"{member.get('description', '')}; {note}".lstrip("; ")


class Body(BaseModel):
    """A JSON object of a request body, or one inside it."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_document)

    #: the route refuses members other than the model's (the document says so)
    closed: ClassVar[bool] = False
    #: members the route requires with its own message (the model lets them be left out)
    route_requires: ClassVar[tuple[str, ...]] = ()
    #: members the route reads with ``or`` / ``not``: any false value counts as left out
    blank_is_unset: ClassVar[tuple[str, ...]] = ()
    #: more for the document: what the route checks (``{"minProperties": 1}``), examples
    schema_extra: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _unset_blanks(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.blank_is_unset:
            return {k: v for k, v in data.items() if k not in cls.blank_is_unset or v}
        return data


class Request(Body):
    """A whole request body. ``wrapper`` names the member that holds the object the route
    reads, as Trove sends them (``{"instance": {...}}``); None when the route reads the body
    as it is (``{"restart": {}}``). Members beside the wrapper are ignored."""

    wrapper: ClassVar[str | None] = None
    #: the body may be left out altogether (``POST /root``)
    optional: ClassVar[bool] = False
