"""Cellar's API against a real Keystone (Debian's): who may read and change what, and
how soon a token revoked at Keystone stops working.

Only Keystone is a real server here (the production profile's ``keystone`` fixture);
the API runs in this process on SQLite, so no Docker is needed. The embedded profile
has no Keystone and skips these tests.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from api import auth, state
from api.app import create_app
from api.keystone import KeystoneValidator
from cellar import settings as settings_module
from tests.integration.identity import Identity, Login
from tests.integration.keystone import SERVICE_PROJECT, KeystoneServer

pytestmark = pytest.mark.skipif(
    os.environ.get("CELLAR_TEST_PROFILE", "embedded") != "production",
    reason="a real Keystone is the production profile's identity",
)


def cellar_app(home: Path, env: dict[str, str]) -> Flask:
    """Cellar's API on SQLite in ``home``, validating tokens as ``env`` says."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("CELLAR_")]:
            patch.delenv(key)
        patch.setenv("CELLAR_HOME", str(home))
        for key, value in env.items():
            patch.setenv(key, value)
        settings = settings_module.load()
    services = state.build(settings)
    services.db.upgrade()
    return create_app(services)


@pytest.fixture(scope="module")
def admin(keystone: KeystoneServer) -> Identity:
    return keystone.admin()


@pytest.fixture(scope="module")
def app(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    made = cellar_app(tmp_path_factory.mktemp("cellar-keystone"), keystone.cellar_env())
    yield made
    made.extensions["cellar"].db.engine.dispose()


@pytest.fixture(scope="module")
def team(admin: Identity) -> dict[str, Login]:
    """Projects P and Q at Keystone: a member of each, and a reader of P."""
    tag = uuid.uuid4().hex[:8]
    member = admin.member_login(f"ks-p-{tag}")
    name, password, _ = admin.user(member.project_id, "reader")
    return {
        "member": member,
        "reader": admin.login(name, password, f"ks-p-{tag}"),
        "other": admin.member_login(f"ks-q-{tag}"),
    }


def get(app: Flask, path: str, token: str | None) -> TestResponse:
    headers = {} if token is None else {"X-Auth-Token": token}
    return app.test_client().get(path, headers=headers)


def test_keystones_catalog_names_its_own_port(keystone: KeystoneServer, admin: Identity) -> None:
    services = admin.call("GET", "/services", params={"type": "identity"}).json()["services"]
    found = admin.call("GET", "/endpoints", params={"service_id": services[0]["id"]}).json()
    assert {e["url"] for e in found["endpoints"]} == {keystone.url}


def test_a_member_reads_its_project(app: Flask, team: dict[str, Login]) -> None:
    member = team["member"]
    reply = get(app, f"/v1.0/{member.project_id}/instances", member.token)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json() == {"instances": []}


def test_a_token_of_another_project_is_refused(app: Flask, team: dict[str, Login]) -> None:
    reply = get(app, f"/v1.0/{team['member'].project_id}/instances", team["other"].token)
    assert reply.status_code == 403, reply.get_json()


@pytest.mark.parametrize("token", [None, "not-a-token", "gAAAAAB" + "x" * 180])
def test_no_token_or_a_bad_one_is_401(
    app: Flask, team: dict[str, Login], token: str | None
) -> None:
    reply = get(app, f"/v1.0/{team['member'].project_id}/instances", token)
    assert reply.status_code == 401, reply.get_json()


def test_a_reader_reads_but_does_not_write(app: Flask, team: dict[str, Login]) -> None:
    reader = team["reader"]
    path = f"/v1.0/{reader.project_id}/instances"
    assert get(app, path, reader.token).status_code == 200
    body = {"instance": {"name": "no", "flavorRef": "1", "volume": {"size": 1}}}
    reply = app.test_client().post(path, json=body, headers={"X-Auth-Token": reader.token})
    assert reply.status_code == 403, reply.get_json()


def test_keystones_admin_is_cellars_admin(
    app: Flask, admin: Identity, team: dict[str, Login]
) -> None:
    if not any(r.rule == "/v1.0/<project_id>/mgmt/instances" for r in app.url_map.iter_rules()):
        pytest.skip("this Cellar has no management routes")
    own = admin.admin.project_id
    reply = get(app, f"/v1.0/{own}/mgmt/instances", admin.admin.token)
    assert reply.status_code == 200, reply.get_json()
    member = team["member"]
    assert get(app, f"/v1.0/{member.project_id}/instances", admin.admin.token).status_code == 200
    assert get(app, f"/v1.0/{member.project_id}/mgmt/instances", member.token).status_code == 403


def test_no_identity_api_of_its_own(app: Flask, team: dict[str, Login]) -> None:
    token = team["member"].token
    assert get(app, "/identity/v3", None).status_code == 404
    assert get(app, "/identity/v3/projects", token).status_code == 404
    body = {"auth": {"identity": {"methods": ["password"]}}}
    assert app.test_client().post("/identity/v3/auth/tokens", json=body).status_code == 404


def test_a_token_revoked_at_keystone_is_refused_soon(app: Flask, admin: Identity) -> None:
    login = admin.member_login(f"ks-revoked-{uuid.uuid4().hex[:8]}")
    path = f"/v1.0/{login.project_id}/instances"
    assert get(app, path, login.token).status_code == 200  # now in Cellar's cache
    revoke(admin, login.token)
    bound = app.extensions["cellar"].settings.auth_cache + 5.0
    end = time.monotonic() + bound
    status = 200
    while status == 200 and time.monotonic() < end:
        time.sleep(0.25)
        status = get(app, path, login.token).status_code
    assert status == 401, f"a revoked token still worked {bound} s after its revocation"


def test_cellar_logs_in_again_when_keystone_revokes_its_own_token(
    app: Flask, admin: Identity
) -> None:
    validator = auth.current(app).validator
    assert isinstance(validator, KeystoneValidator)
    service_token = validator.session.get_token()
    revoke(admin, service_token)
    login = admin.member_login(f"ks-relogin-{uuid.uuid4().hex[:8]}")
    reply = get(app, f"/v1.0/{login.project_id}/instances", login.token)
    assert reply.status_code == 200, reply.get_json()
    assert validator.session.get_token() != service_token


def test_tokens_are_validated_side_by_side(
    keystone: KeystoneServer, admin: Identity, team: dict[str, Login], tmp_path: Path
) -> None:
    """A Cellar with nothing cached asks Keystone about four callers' tokens at once."""
    fresh = cellar_app(tmp_path / "home", keystone.cellar_env())
    logins = [*team.values(), admin.admin]

    def status(login: Login) -> int:
        return get(fresh, f"/v1.0/{login.project_id}/instances", login.token).status_code

    try:
        with concurrent.futures.ThreadPoolExecutor(len(logins)) as pool:
            assert list(pool.map(status, logins)) == [200] * len(logins)
    finally:
        fresh.extensions["cellar"].db.engine.dispose()


@pytest.mark.parametrize("wrong", ["no service role", "a wrong password"])
def test_keystone_refusing_cellar_is_not_blamed_on_the_caller(
    keystone: KeystoneServer, admin: Identity, team: dict[str, Login], tmp_path: Path, wrong: str
) -> None:
    """Cellar's user without the ``service`` role, or with a wrong password: that is
    Cellar's configuration, a 503, not the caller's bad token (401)."""
    projects = admin.call("GET", "/projects", params={"name": SERVICE_PROJECT}).json()
    name, password, _ = admin.user(projects["projects"][0]["id"], "member")
    if wrong == "a wrong password":
        name, password = "cellar", "not-its-password"
    env = keystone.cellar_env() | {"CELLAR_AUTH_USERNAME": name, "CELLAR_AUTH_PASSWORD": password}
    misconfigured = cellar_app(tmp_path / "home", env)
    member = team["member"]
    try:
        reply = get(misconfigured, f"/v1.0/{member.project_id}/instances", member.token)
        assert reply.status_code == 503, reply.get_json()
        assert "CELLAR_AUTH_USERNAME" in reply.get_json()["serviceUnavailable"]["message"]
    finally:
        misconfigured.extensions["cellar"].db.engine.dispose()


def test_an_admin_project_of_another_domain_is_not_cellars_admin(
    app: Flask, admin: Identity
) -> None:
    """A domain's admin can make a project named ``admin`` in it: still not Cellar's admin."""
    if not any(r.rule == "/v1.0/<project_id>/mgmt/instances" for r in app.url_map.iter_rules()):
        pytest.skip("this Cellar has no management routes")
    domain = f"ks-domain-{uuid.uuid4().hex[:8]}"
    domain_id = admin.call("POST", "/domains", json={"domain": {"name": domain}}).json()
    domain_id = domain_id["domain"]["id"]
    project = {"name": "admin", "domain_id": domain_id}
    project_id = admin.call("POST", "/projects", json={"project": project}).json()["project"]["id"]
    password = f"Pw-{uuid.uuid4().hex}"
    user = {"name": "boss", "password": password, "domain_id": domain_id}
    user_id = admin.call("POST", "/users", json={"user": user}).json()["user"]["id"]
    role = admin.role_id("admin")
    admin.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role}")
    scope = {"project": {"name": "admin", "domain": {"id": domain_id}}}
    methods = {"user": {"id": user_id, "password": password}}
    body = {"auth": {"identity": {"methods": ["password"], "password": methods}, "scope": scope}}
    made = admin.http.post(f"{admin.url}/auth/tokens", json=body, timeout=30)
    assert made.status_code == 201, made.text
    token = made.headers["X-Subject-Token"]
    assert get(app, f"/v1.0/{project_id}/instances", token).status_code == 200
    assert get(app, f"/v1.0/{project_id}/mgmt/instances", token).status_code == 403
    assert get(app, f"/v1.0/{admin.admin.project_id}/instances", token).status_code == 403


def revoke(admin: Identity, token: str) -> None:
    """Revoke ``token`` at Keystone, as its admin (``DELETE /v3/auth/tokens``)."""
    headers = {"X-Auth-Token": admin.admin.token, "X-Subject-Token": token}
    reply = admin.http.delete(f"{admin.url}/auth/tokens", headers=headers, timeout=30)
    assert reply.status_code == 204, reply.text
