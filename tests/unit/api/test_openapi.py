"""The OpenAPI document at /v1.0/openapi.json: valid OpenAPI 3.1, made from the app's
routes, with the request models that every route's body is checked with first."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from api import engine_logs, instances, openapi, task_wait
from api.app import create_app
from api.schemas import BODIES
from api.schemas.backups import BackupAction
from api.schemas.engine_logs import LogAction
from api.schemas.instances import InstanceAction
from api.schemas.queries import QUERIES
from api.schemas.quotas import Limits
from cellar.quotas import Resource
from tests.unit.api import test_role_matrix as matrix
from tests.unit.api.support import client_for, logged_in, member_of

P = "/v1.0/<project_id>"
INST = f"{P}/instances/<instance_id>"
V3 = "/identity/v3"
NO_BODY = {("PUT", f"{V3}/projects/<project_id>/users/<user_id>/roles/<role_id>")}
GOOD = {"name": "orders", "flavorRef": "1", "volume": {"size": 1}}


@pytest.fixture
def app(world: Any) -> Flask:
    return create_app(world[0])


@pytest.fixture
def doc(app: Flask) -> dict[str, Any]:
    reply = app.test_client().get(openapi.PATH)
    assert reply.status_code == 200
    found: dict[str, Any] = reply.get_json()
    return found


def schema_of(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of the document's component ``name``, its references resolved in it."""
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def api_rules(app: Flask) -> set[tuple[str, str]]:
    """Every (method, rule) the app serves but the dashboard's."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if openapi.documented(rule)
        for method in rule.methods or ()
    }


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"].startswith("3.1")
    token = doc["components"]["securitySchemes"]["token"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "X-Auth-Token")


def test_the_route_answers_without_a_token(world: Any) -> None:
    reply = create_app(world[0]).test_client().get("/v1.0/openapi.json")
    assert reply.status_code == 200 and reply.mimetype == "application/json"
    assert reply.get_json()["paths"]["/v1.0/openapi.json"]["get"]["security"] == []


def test_every_rule_and_method_but_the_dashboards_is_in_it(app: Flask, doc: dict[str, Any]) -> None:
    listed = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {(method, openapi.openapi_path(rule)) for method, rule in api_rules(app)}
    assert sorted(listed) == sorted(served)
    assert ("HEAD", "/v1.0/{project_id}/instances") in listed
    assert ("OPTIONS", "/v1.0/{project_id}/instances") in listed
    assert not [path for path in doc["paths"] if path.startswith("/dashboard")]
    assert any(r.rule.startswith("/dashboard/") for r in app.url_map.iter_rules())
    assert "/dashboard/" in doc["info"]["description"]


def test_path_parameters_come_from_the_rules(doc: dict[str, Any]) -> None:
    item = doc["paths"]["/v1.0/{project_id}/instances/{instance_id}/users/{user}/databases"]
    assert [p["name"] for p in item["parameters"]] == ["project_id", "instance_id", "user"]
    assert all(p["in"] == "path" and p["required"] for p in item["parameters"])
    assert item["parameters"][0]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"


def test_every_route_that_reads_a_body_has_a_request_schema(
    app: Flask, doc: dict[str, Any]
) -> None:
    writes = {(m, r) for m, r in api_rules(app) if m in ("POST", "PUT", "PATCH")}
    assert sorted(writes - NO_BODY) == sorted(BODIES)
    for method, rule in BODIES:
        operation = doc["paths"][openapi.openapi_path(rule)][method.lower()]
        reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert reference == f"#/components/schemas/{BODIES[(method, rule)].__name__}"
    for method, rule in NO_BODY:
        assert "requestBody" not in doc["paths"][openapi.openapi_path(rule)][method.lower()]
    root = doc["paths"]["/v1.0/{project_id}/instances/{instance_id}/root"]["post"]
    assert root["requestBody"]["required"] is False


def test_the_list_routes_document_their_query_parameters(doc: dict[str, Any]) -> None:
    def names(path: str, method: str = "get") -> list[str]:
        return [p["name"] for p in doc["paths"][path][method].get("parameters", [])]

    assert names("/v1.0/{project_id}/instances") == ["limit", "marker"]
    assert names("/v1.0/{project_id}/backups") == ["limit", "instance_id", "datastore"]
    assert set(names("/v1.0/{project_id}/audit")) >= {"since", "until", "user", "target"}
    assert names("/v1.0/{project_id}/instances/{instance_id}/log/{name}") == ["lines"]
    assert names("/v1.0/{project_id}/mgmt/tasks") == ["state", "hours"]
    assert names("/v1.0/{project_id}/backup_strategies", "delete")[0] == "instance_id"
    assert doc["paths"]["/v1.0/{project_id}/backup_strategies"]["delete"]["parameters"][0][
        "required"
    ]
    assert "user.id" in names("/identity/v3/role_assignments")
    for method, rule in QUERIES:
        assert method.lower() in doc["paths"][openapi.openapi_path(rule)], (method, rule)


def test_responses_name_the_success_codes_and_the_error_bodies(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert "202" in paths["/v1.0/{project_id}/instances"]["post"]["responses"]
    assert "200" in paths["/v1.0/{project_id}/configurations"]["post"]["responses"]
    assert "201" in paths["/identity/v3/users"]["post"]["responses"]
    assert "204" in paths["/identity/v3/users/{user_id}"]["delete"]["responses"]
    create = paths["/v1.0/{project_id}/instances"]["post"]["responses"]
    assert {"400", "401", "403", "404", "413", "415", "422"} <= set(create)
    error = schema_of(doc, "BadRequest")
    error.validate({"badRequest": {"code": 400, "message": "no", "request_id": "req-1"}})
    error.validate({"badRequest": {"code": 400, "message": "no"}})
    assert not error.is_valid({"itemNotFound": {"code": 404, "message": "no"}})
    keystone = paths["/identity/v3/projects"]["post"]["responses"]["400"]
    assert keystone["content"]["application/json"]["schema"]["$ref"].endswith("/KeystoneError")
    assert paths["/healthcheck"]["get"]["security"] == []
    assert paths["/metrics"]["get"]["security"] == [{"token": []}, {"scrape": []}]
    assert "security" not in paths["/v1.0/{project_id}/instances"]["get"]


ACCEPTED: list[tuple[str, Any]] = [
    ("CreateInstance", {"instance": GOOD}),
    ("CreateInstance", {"instance": {**GOOD, "flavorRef": 2, "volume": {"size": "2"}}}),
    ("CreateInstance", {"instance": {"name": "sdk", "flavor": {"id": "1"}, "volume": {"size": 1}}}),
    ("CreateInstance", {"instance": {"name": "r", "replica_of": "id", "replica_count": "2"}}),
    ("CreateInstance", {"instance": {**GOOD, "datastore": {"type": "", "version": 15}}}),
    ("InstanceAction", {"resize": {"volume": {"size": 3}}}),
    ("InstanceAction", {"reset_status": {"force_delete": True}}),
    ("CreateDatabases", {"database": {"name": "shop"}}),
    ("CreateBackupStrategy", {"backup_strategy": {"instance_id": "i", "swift_container": "c"}}),
    ("CreateBackupStrategy", {"backup_strategy": {"instance_id": "i", "keep_count": "7"}}),
    ("EnableRoot", {"root": {"password": "pa55-word"}}),
    ("SetQuotas", {"quotas": {"instances": -1, "ram": None}}),
]
REFUSED: list[tuple[str, Any]] = [
    ("CreateInstance", {"instance": {**GOOD, "name": 5}}),
    ("CreateInstance", {"instance": {**GOOD, "volume": {"size": True}}}),
    ("CreateInstance", {"instance": {**GOOD, "users": "bob"}}),
    ("CreateInstance", {"instance": {**GOOD, "access": {"is_public": True, "ports": [5432]}}}),
    ("InstanceAction", {"restart": {}, "resize": {"flavorRef": "2"}}),
    ("BackupAction", {"verify": {}, "other": 1}),
    ("CreateBackupStrategy", {"backup_strategy": {"instance_id": "i", "verify": "yes"}}),
    ("SetQuotas", {"quotas": {"disks": 3}}),
    ("LogAction", {}),
]


@pytest.mark.parametrize(("name", "body"), ACCEPTED)
def test_bodies_the_api_takes_fit_the_document(doc: dict[str, Any], name: str, body: Any) -> None:
    schema_of(doc, name).validate(body)


@pytest.mark.parametrize(("name", "body"), REFUSED)
def test_bodies_the_api_refuses_do_not(doc: dict[str, Any], name: str, body: Any) -> None:
    assert not schema_of(doc, name).is_valid(body)


def test_the_document_agrees_with_the_api_on_instance_bodies(
    client: FlaskClient, doc: dict[str, Any]
) -> None:
    check = schema_of(doc, "CreateInstance")
    for body in ({"instance": GOOD}, {"instance": {**GOOD, "flavorRef": 2}}):
        assert check.is_valid(body)
        assert client.post("/v1.0/proj1/instances", json=body).status_code == 202
    for body in ({"instance": {**GOOD, "name": 5}}, {"instance": {**GOOD, "tls": {"x": 1}}}):
        assert not check.is_valid(body)
        assert client.post("/v1.0/proj1/instances", json=body).status_code == 400


def test_the_action_models_know_the_routes_actions() -> None:
    assert tuple(InstanceAction.model_fields) == instances.ACTIONS
    assert set(LogAction.model_fields) == {"name", *engine_logs.ACTIONS}
    assert list(Limits.model_fields) == [r.value for r in Resource]
    assert list(BackupAction.model_fields) == ["verify"]


def test_every_whole_body_model_names_a_wrapper_it_has() -> None:
    for model in set(BODIES.values()):
        assert model.wrapper is None or list(model.model_fields) == [model.wrapper], model


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


# A wrong type for each route's body, and the member the refusal must name.
WRONG: dict[tuple[str, str], tuple[Any, str]] = {
    ("POST", f"{P}/instances"): ({"instance": {**GOOD, "name": 5}}, "instance.name"),
    ("PUT", INST): ({"instance": {"tls": {"required": "yes"}}}, "instance.tls.required"),
    ("POST", f"{INST}/action"): ({"resize": {"flavorRef": [3]}}, "resize.flavorRef"),
    ("POST", f"{INST}/databases"): ({"databases": [{"name": 5}]}, "databases[0].name"),
    ("POST", f"{INST}/users"): ({"users": [{"name": "u", "password": 5}]}, "users[0].password"),
    ("POST", f"{INST}/credentials"): (
        {"credential": {"reason": "r", "databases": "shop"}},
        "credential.databases",
    ),
    ("POST", f"{INST}/credentials/<credential_id>/action"): ({"approve": 5}, "approve"),
    ("PUT", f"{P}/settings"): (
        {"settings": {"approve_write_credentials": "yes"}},
        "settings.approve_write_credentials",
    ),
    ("POST", f"{INST}/users/<user>"): ({"users": {"password": ["x"]}}, "users.password"),
    ("PUT", f"{INST}/users"): ({"users": [{"name": "alice", "password": 7}]}, "users[0].password"),
    ("PUT", f"{INST}/users/<user>"): ({"user": {"password": 7}}, "user.password"),
    ("PUT", f"{INST}/users/<user>/databases"): ({"databases": [{"name": 1}]}, "databases[0].name"),
    ("POST", f"{INST}/root"): ({"password": 1234}, "password"),
    ("POST", f"{INST}/log"): ({"name": 5}, "name"),
    ("POST", f"{P}/backups"): ({"backup": {"name": "n", "instance": 5}}, "backup.instance"),
    ("POST", f"{P}/backups/<backup_id>/action"): ({"verify": {}, "now": 1}, "now"),
    ("POST", f"{P}/backup_strategies"): (
        {"backup_strategy": {"instance_id": ["x"]}},
        "backup_strategy.instance_id",
    ),
    ("POST", f"{P}/configurations"): (
        {"configuration": {"name": "c", "values": [1]}},
        "configuration.values",
    ),
    ("PUT", f"{P}/configurations/<config_id>"): (
        {"configuration": {"values": "x"}},
        "configuration.values",
    ),
    ("PATCH", f"{P}/configurations/<config_id>"): (
        {"configuration": {"values": 5}},
        "configuration.values",
    ),
    ("PUT", f"{P}/mgmt/quotas/<target>"): ({"quotas": {"ram": "lots"}}, "quotas.ram"),
    ("POST", f"{V3}/auth/tokens"): (
        {"auth": {"identity": {"methods": "password"}}},
        "auth.identity.methods",
    ),
    ("POST", f"{V3}/projects"): ({"project": {"name": "p", "enabled": 1}}, "project.enabled"),
    ("PATCH", f"{V3}/projects/<project_id>"): ({"project": {"name": 5}}, "project.name"),
    ("POST", f"{V3}/users"): ({"user": {"name": "u", "email": 5}}, "user.email"),
    ("PATCH", f"{V3}/users/<user_id>"): ({"user": {"enabled": "no"}}, "user.enabled"),
    ("POST", f"{V3}/users/<user_id>/password"): ({"user": {"password": 5}}, "user.password"),
    ("POST", f"{V3}/users/<user_id>/application_credentials"): (
        {"application_credential": {"name": "ci", "roles": "reader"}},
        "application_credential.roles",
    ),
}


def test_every_model_has_a_wrong_type_below() -> None:
    assert sorted(WRONG) == sorted(BODIES)


def test_each_model_refuses_a_wrong_type_with_a_400_naming_the_field(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, queue = world[0], world[3]
    monkeypatch.setattr(task_wait, "WAIT_SECONDS", 0.0)
    matrix.own_agents(services)
    app = create_app(services)
    project = "typed"
    held = matrix.furnish(
        logged_in(app.test_client(), member_of(services, project)), world, project
    )
    admin, names = matrix.walker(services, app, project, "admin")
    member = logged_in(app.test_client(), member_of(services, project))
    for (method, rule), (body, field) in WRONG.items():
        caller = member if rule.startswith(P) and "/mgmt/" not in rule else admin
        path = matrix.path_of(rule, method, held, project, names)
        reply = caller.open(path, method=method, json=body)
        queue.drain(services)
        assert reply.status_code == 400, (method, rule, reply.get_json())
        error = reply.get_json()["error" if rule.startswith(V3) else "badRequest"]
        assert error["code"] == 400
        assert error["message"].startswith(f"{field} "), (method, rule, error["message"])
        assert " must be " in error["message"] or " is not known here" in error["message"]


def test_a_refusal_says_what_is_allowed_and_never_echoes_the_value(client: FlaskClient) -> None:
    reply = client.post("/v1.0/proj1/instances", json={"instance": {**GOOD, "flavorRef": [9]}})
    message = reply.get_json()["badRequest"]["message"]
    assert message == (
        "instance.flavorRef must be a flavor's id (1, 2, 3, 4), or a link that ends in one"
    )
    secret = ["s3cret-pass"]
    users = [{"name": "bob", "password": secret}]
    reply = client.post("/v1.0/proj1/instances", json={"instance": {**GOOD, "users": users}})
    message = reply.get_json()["badRequest"]["message"]
    assert message == "instance.users[0].password must be a string"
    assert "s3cret" not in reply.get_data(as_text=True)
    reply = client.post("/v1.0/proj1/instances", json={"instance": {**GOOD, "volume": None}})
    assert "volume is required" in reply.get_json()["badRequest"]["message"]  # the route's


@pytest.mark.parametrize("caller", ["none", "reader", "admin"])
def test_every_answer_of_the_walk_is_a_documented_response(
    world: Any, monkeypatch: pytest.MonkeyPatch, caller: str
) -> None:
    """Every route walked with a good body, by someone without a token, a reader and an
    admin (who may use them all): each status is one the document gives for it."""
    services, queue = world[0], world[3]
    monkeypatch.setattr(task_wait, "WAIT_SECONDS", 0.0)
    matrix.own_agents(services)
    app = create_app(services)
    doc = app.test_client().get(openapi.PATH).get_json()
    project = "walked"
    held = matrix.furnish(
        logged_in(app.test_client(), member_of(services, project)), world, project
    )
    client, names = matrix.walker(services, app, project, caller)
    wrong = []
    for method, rule in matrix.routes(app):
        if matrix.kind_of(rule, method) == matrix.DASHBOARD:
            continue
        reply = matrix.ask(client, method, rule, held, project, names)
        queue.drain(services)
        documented = doc["paths"][openapi.openapi_path(rule)][method.lower()]["responses"]
        if str(reply.status_code) not in documented:
            wrong.append(f"{method} {rule} -> {reply.status_code}, documented {sorted(documented)}")
    assert wrong == [], "\n".join(wrong)
