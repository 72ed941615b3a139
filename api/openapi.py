"""``GET /v1.0/openapi.json``: the API's OpenAPI 3.1 document, made from the app itself.

Every rule of ``app.url_map`` is a path and each of its methods an operation, but the
dashboard's (``/dashboard/...``: web pages and their static files, not an API). Path
parameters come from each rule's converters, request bodies from ``api.schemas.BODIES``,
query parameters from ``api.schemas.queries.QUERIES``, error bodies from
``api.errors.HTTP_NAMES``, summaries from the views' docstrings. Which codes a route
answers follows from its method and rule, with the exceptions in the tables below
(``tests/unit/api/test_openapi.py`` walks every route and checks each answer is listed).
The document is built once per app, at its first request.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import sys
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from werkzeug.routing import FloatConverter, IntegerConverter, Rule, UUIDConverter

from api import auth
from api.errors import HTTP_NAMES
from api.schemas import BODIES
from api.schemas.queries import QUERIES
from api.schemas.responses import ErrorDetail, KeystoneError

logger = logging.getLogger(__name__)

blueprint = Blueprint("openapi", __name__)

PATH = "/v1.0/openapi.json"
REF = "#/components/schemas/{model}"
DASHBOARD = auth.DASHBOARD
PROJECT = "/v1.0/<project_id>"
INSTANCE = f"{PROJECT}/instances/<instance_id>"
V3 = "/identity/v3"
ASSIGNMENT = f"{V3}/projects/<project_id>/users/<user_id>/roles/<role_id>"
VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
READS = ("GET", "HEAD", "OPTIONS")
WITH_BODY = ("POST", "PUT", "PATCH")
ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)
DESCRIPTION = """\
Cellar's REST API: OpenStack Trove's v1.0 wire format under `/v1.0/{project_id}`, with
Cellar's additions, and a Keystone v3 identity API under `/identity/v3` when Cellar keeps
its own identities. Every route but the version documents, `/healthcheck`, this document
and the login needs a token in `X-Auth-Token`. Errors come in Trove's shape,
`{"badRequest": {"code": 400, "message": ..., "request_id": ...}}` (Keystone's,
`{"error": {"code", "title", "message"}}`, on the identity API).

Generated from the running app: every route and method it serves is here, but the web
dashboard's under `/dashboard/` (HTML pages and their static files), which are not API.
"""

# where a route answers otherwise than its method's usual success (see ``_successes``)
SUCCESSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", f"{PROJECT}/configurations"): (200,),
    ("POST", f"{INSTANCE}/root"): (200, 202),
    ("DELETE", f"{INSTANCE}/root"): (204, 202),
    ("POST", f"{INSTANCE}/log"): (200, 202),
    ("POST", f"{INSTANCE}/credentials"): (201, 202),
    ("DELETE", f"{INSTANCE}/credentials/<credential_id>"): (200, 202),
    ("POST", f"{INSTANCE}/credentials/<credential_id>/action"): (200, 202),
    ("PUT", f"{PROJECT}/settings"): (200,),
    ("PUT", f"{PROJECT}/mgmt/quotas/<target>"): (200,),
    ("HEAD", "/healthcheck"): (204,),
    ("GET", "/identity"): (300,),  # Keystone's choice of versions
    ("GET", "/identity/"): (300,),
    ("HEAD", "/identity"): (300,),
    ("HEAD", "/identity/"): (300,),
    ("POST", f"{V3}/users/<user_id>/password"): (204,),
    ("GET", ASSIGNMENT): (204,),
    ("HEAD", ASSIGNMENT): (204,),
}
# routes that may answer 409: the name is taken, the instance is a replica or has some,
# a backup has incrementals, the project still holds things, access.is_public changes
CONFLICTS = re.compile(
    r"(POST|PUT|DELETE) /v1\.0/<project_id>/instances(/<instance_id>(/action"
    r"|/(databases|users|root|credentials)(/.*)?)?)?"
    r"|DELETE /v1\.0/<project_id>/backups/<backup_id>"
    r"|(POST|PATCH|DELETE) /identity/v3/(projects|users)(/<\w+>)?"
    r"|POST /identity/v3/users/<user_id>/application_credentials"
)
# routes whose query names a row (``marker``, ``instance_id``): 404 when it does not exist
LOOKUPS = re.compile(
    r"(GET|HEAD|DELETE) /v1\.0/<project_id>/(instances(/detail)?|backups|backup_strategies"
    r"|mgmt/instances)"
)
# reads asked of the instance's agent: 422 until it is ACTIVE
LIVE = re.compile(
    r"GET /v1\.0/<project_id>/instances/<instance_id>/(databases|users|log|configuration)"
)
MEDIA = {"/healthcheck": "text/plain", "/metrics": "text/plain; version=0.0.4"}
SECURITY = {
    "token": {
        "type": "apiKey",
        "in": "header",
        "name": auth.TOKEN_HEADER,
        "description": "a token from POST /identity/v3/auth/tokens (or from the Keystone)",
    },
    "scrape": {"type": "http", "scheme": "bearer", "description": "the scrape token of /metrics"},
}


@blueprint.get(PATH)
def document() -> ResponseReturnValue:
    """This document, OpenAPI 3.1 (no token needed)."""
    found = current_app.extensions.get("cellar_openapi")
    if found is None:
        found = current_app.extensions["cellar_openapi"] = build(current_app)
    return jsonify(found)


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every rule of ``app`` but the dashboard's."""
    schemas: dict[str, Any] = {}
    _error_schemas(schemas)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    operation_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if documented(rule):
            item = paths.setdefault(openapi_path(rule.rule), {})
            parameters = path_parameters(app, rule)
            if parameters:
                item["parameters"] = parameters
            view = app.view_functions[rule.endpoint]
            tag = rule.endpoint.split(".", 1)[0]
            tags.setdefault(tag, _first_line(sys.modules[view.__module__].__doc__))
            # a path served by several rules (one per method) lists Flask's OPTIONS once
            for method in sorted(set(rule.methods or ()) - {m.upper() for m in item}):
                found = operation(rule, method, view, schemas)
                found["operationId"] = _unique(operation_ids, f"{method.lower()}_{rule.endpoint}")
                found["tags"] = [tag]
                item[method.lower()] = found
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cellar", "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": name, "description": text} for name, text in sorted(tags.items())],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY},
        "security": [{"token": []}],
    }


def documented(rule: Rule) -> bool:
    """Whether ``rule`` is API: not the dashboard's pages and static files."""
    text = rule.rule
    return rule.endpoint != "static" and text != DASHBOARD and not text.startswith(f"{DASHBOARD}/")


def openapi_path(rule: str) -> str:
    """``/instances/<instance_id>`` as OpenAPI writes it: ``/instances/{instance_id}``."""
    return VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule)


def path_parameters(app: Flask, rule: Rule) -> list[dict[str, Any]]:
    """The rule's variables, typed by their converters."""
    from api.app import PROJECT_ID

    converters = app.url_map.converters
    found = []
    for match in VARIABLE.finditer(rule.rule):
        name = match.group("name")
        converter = converters.get(match.group("converter") or "default")
        schema: dict[str, Any] = {"type": "string"}
        if converter is not None and issubclass(converter, IntegerConverter):
            schema = {"type": "integer"}
        elif converter is not None and issubclass(converter, FloatConverter):
            schema = {"type": "number"}
        elif converter is not None and issubclass(converter, UUIDConverter):
            schema = {"type": "string", "format": "uuid"}
        if name == "project_id" and rule.rule.startswith("/v1.0/"):
            schema["pattern"] = f"^{PROJECT_ID.pattern}$"
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    return found


def operation(rule: Rule, method: str, view: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """One method of one rule: what it takes, who may call it, what it answers."""
    asked = "GET" if method == "HEAD" else method
    summary, description = _words(view, method)
    found: dict[str, Any] = {"summary": summary}
    if description:
        found["description"] = description
    query = QUERIES.get((asked, rule.rule))
    if query is not None:
        found["parameters"] = query_parameters(query)
    model = BODIES.get((method, rule.rule))
    if model is not None:
        _add_schema(model, schemas)
        found["requestBody"] = {
            "required": not model.optional,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    public = (asked, rule.rule) in auth.PUBLIC
    found["responses"] = responses(rule.rule, method, public, model is not None)
    if public:
        found["security"] = []
    elif (asked, rule.rule) in auth.OWN_CHECK:
        found["security"] = [{"token": []}, {"scrape": []}]
    return found


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    found = []
    for name, member in schema.get("properties", {}).items():
        member = {k: v for k, v in member.items() if k != "title"}
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in member:
            parameter["description"] = member.pop("description")
        found.append({**parameter, "schema": member})
    return found


def responses(rule: str, method: str, public: bool, body: bool) -> dict[str, Any]:
    """The success codes and the errors that ``method`` on ``rule`` may answer."""
    found: dict[str, Any] = {}
    for code in _successes(rule, method):
        answer: dict[str, Any] = {"description": HTTPStatus(code).phrase}
        if code in (200, 201, 300) and method not in ("HEAD", "OPTIONS"):
            media = MEDIA.get(rule, "application/json")
            schema = {"type": "string"} if media.startswith("text/") else {"type": "object"}
            answer["content"] = {media: {"schema": schema}}
        found[str(code)] = answer
    for code in _errors(rule, method, public, body):
        name = "KeystoneError" if rule.startswith("/identity") else _error_name(code)
        answer = {"description": HTTPStatus(code).phrase}
        if method != "HEAD":
            answer["content"] = {"application/json": {"schema": {"$ref": REF.format(model=name)}}}
        found[str(code)] = answer
    # the HTTP server's own answer to a request line past its limit, before Cellar sees it
    found["414"] = {"description": "URI Too Long: the request line passes 4094 bytes"}
    return found


def _successes(rule: str, method: str) -> tuple[int, ...]:
    """What the route answers when it works: its own code, or its method's usual one
    (a read 200; a change 202 on Trove's API, where tasks do the work; Keystone's codes
    on the identity API)."""
    if (method, rule) in SUCCESSES:
        return SUCCESSES[(method, rule)]
    if method in READS:
        return (200,)
    if rule.startswith("/identity"):
        return ({"POST": 201, "PATCH": 200}.get(method, 204),)
    return (202,)


def _errors(rule: str, method: str, public: bool, body: bool) -> list[int]:
    """The error codes the route may answer, as they apply to it."""
    asked = f"{method} {rule}"
    variables = {m.group("name") for m in VARIABLE.finditer(rule)} - {"project_id"}
    writes = method not in READS and rule.startswith(f"{PROJECT}/") and "/mgmt/" not in rule
    answered = method != "OPTIONS"  # Flask answers OPTIONS itself, once the token is checked
    applies = {
        400: True,  # a Host header this Cellar does not serve, a bad project id or query
        401: not public,
        403: not public,
        404: answered and (bool(variables) or body or LOOKUPS.fullmatch(asked) is not None),
        409: CONFLICTS.fullmatch(asked) is not None,
        413: body,
        415: body,
        422: writes or LIVE.match(asked) is not None,
        503: not public or rule == "/healthcheck",  # a Keystone, an agent or a task failed
    }
    return [code for code in ERRORS if applies[code]]


def _error_name(code: int) -> str:
    kind = HTTP_NAMES[code]
    return kind[0].upper() + kind[1:]


def _error_schemas(schemas: dict[str, Any]) -> None:
    """Trove's error bodies, one per code (``{"badRequest": {...}}``), and Keystone's."""
    _add_schema(ErrorDetail, schemas)
    _add_schema(KeystoneError, schemas)
    for code in ERRORS:
        kind = HTTP_NAMES[code]
        schemas[_error_name(code)] = {
            "title": _error_name(code),
            "description": f"Trove's error body of a {code}",
            "type": "object",
            "properties": {kind: {"$ref": REF.format(model="ErrorDetail")}},
            "required": [kind],
            "additionalProperties": False,
        }


def _add_schema(model: type[BaseModel], schemas: dict[str, Any]) -> None:
    """``model``'s JSON schema and those it refers to, in ``schemas``; two different
    schemas of one name are refused (models are named once in the whole API)."""
    schema = model.model_json_schema(ref_template=REF)
    found = {**schema.pop("$defs", {}), model.__name__: schema}
    for name, each in found.items():
        if schemas.setdefault(name, each) != each:
            raise ValueError(f"two request schemas are named {name}: rename one model")


def _words(view: Any, method: str) -> tuple[str, str]:
    """The operation's summary and description, from the view's docstring."""
    if method == "OPTIONS":
        return "The methods this path allows, in the Allow header", ""
    text = inspect.getdoc(view) or ""
    summary, _, rest = text.partition("\n")
    summary = summary.strip() or view.__name__.replace("_", " ").capitalize()
    if method == "HEAD":
        summary = f"{summary.rstrip('.')}; HEAD: the headers only"
    return summary, " ".join(rest.split())


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n", 1)[0].split())


def _unique(taken: set[str], wanted: str) -> str:
    found, number = wanted, 1
    while found in taken:
        number += 1
        found = f"{wanted}_{number}"
    taken.add(found)
    return found


def _version() -> str:
    try:
        return importlib.metadata.version("cellar")
    except importlib.metadata.PackageNotFoundError:
        return "1.0"
