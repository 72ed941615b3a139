"""``/identity/v3/auth/tokens``: logging in by password, application credential or token,
validating and revoking tokens, and what the audit trail keeps of it (never a secret)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from sqlalchemy import inspect, select
from werkzeug.test import TestResponse

from api.app import create_app
from cellar.identity.bootstrap import bootstrap
from cellar.identity.models import Project, Role, RoleAssignment, User
from cellar.identity.passwords import hash_password
from cellar.identity.tokens import Sealed, TokenSealer, new_audit_id
from cellar.models import AuditEvent, utcnow
from tests.unit.api.support import admin_token

V3 = "/identity/v3"
TOKENS = f"{V3}/auth/tokens"
HOST = "http://127.0.0.1:8779"
PASSWORD = "c0rrect-Horse-battery"
DEFAULT = {"name": "Default"}
STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


@pytest.fixture
def svc(world: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CELLAR_TOKEN_KEY", raising=False)
    bootstrap(world[0].settings, world[0].db)
    return world[0]


@pytest.fixture
def client(svc: Any) -> FlaskClient:
    return create_app(svc).test_client()


def project_named(svc: Any, name: str) -> str:
    """The id of project ``name``, made if missing."""
    with svc.db.session() as session:
        found = session.scalars(select(Project).where(Project.name == name)).first()
        if found is None:
            found = Project(name=name)
            session.add(found)
            session.flush()
        return found.id


def add_user(
    svc: Any,
    name: str,
    roles: dict[str, tuple[str, ...]],
    *,
    password: str = PASSWORD,
    default_project: str | None = None,
) -> str:
    """A user with ``roles`` per project name; its id."""
    projects = {p: project_named(svc, p) for p in roles}
    with svc.db.session() as session:
        user = User(
            name=name,
            password_hash=hash_password(password),
            default_project_id=projects.get(default_project or "") or default_project,
        )
        session.add(user)
        session.flush()
        for project, names in roles.items():
            for role_name in names:
                role = session.scalars(select(Role).where(Role.name == role_name)).one()
                session.add(
                    RoleAssignment(user_id=user.id, project_id=projects[project], role_id=role.id)
                )
        return user.id


def password_body(user: dict[str, Any], password: object, scope: object = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {"methods": ["password"], "password": {"user": {**user, "password": password}}}
    }
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def by_name(project: str) -> dict[str, Any]:
    return {"project": {"name": project, "domain": DEFAULT}}


def log_in(client: FlaskClient, name: str, project: str, password: str = PASSWORD) -> TestResponse:
    body = password_body({"name": name, "domain": DEFAULT}, password, by_name(project))
    return client.post(TOKENS, json=body, base_url=HOST)


def token_of(client: FlaskClient, name: str, project: str) -> str:
    reply = log_in(client, name, project)
    assert reply.status_code == 201, reply.get_json()
    return reply.headers["X-Subject-Token"]


def instances(client: FlaskClient, token: str, project_id: str) -> TestResponse:
    return client.get(f"/v1.0/{project_id}/instances", headers={"X-Auth-Token": token})


def assert_keystone_error(reply: TestResponse, code: int) -> str:
    assert reply.status_code == code, reply.get_json()
    error = reply.get_json()["error"]
    assert error["code"] == code
    assert (
        error["title"]
        == {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
        }[code]
    )
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, STAMP)


# --- password -------------------------------------------------------------------------


def test_password_login_by_names_gives_a_sealed_project_token(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "ada", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    before = utcnow()
    reply = log_in(client, "ada", "shop")
    assert reply.status_code == 201
    token = reply.headers["X-Subject-Token"]
    view = reply.get_json()["token"]
    assert view["methods"] == ["password"]
    assert view["user"]["id"] == user_id
    assert view["user"]["name"] == "ada"
    assert view["user"]["domain"] == {"id": "default", "name": "Default"}
    assert view["project"] == {"id": shop, "name": "shop", "domain": view["user"]["domain"]}
    assert [r["name"] for r in view["roles"]] == ["member"]
    ttl = dt.timedelta(seconds=svc.settings.token_ttl)
    assert before + ttl - dt.timedelta(seconds=5) <= when(view["expires_at"])
    assert when(view["expires_at"]) <= utcnow() + ttl
    assert when(view["issued_at"]) <= utcnow()

    catalog = {entry["type"]: entry for entry in view["catalog"]}
    assert set(catalog) == {"database", "identity"}
    urls = {e["interface"]: e["url"] for e in catalog["database"]["endpoints"]}
    assert urls["public"] == f"{HOST}/v1.0/{shop}"
    assert {e["url"] for e in catalog["identity"]["endpoints"]} == {f"{HOST}{V3}"}

    sealed = base64.urlsafe_b64decode(token)  # Fernet: a version, a time, an IV, ciphertext
    for clear in (PASSWORD, shop, user_id, "ada"):
        assert clear not in token
        assert clear.encode() not in sealed
    assert instances(client, token, shop).status_code == 200


def test_password_login_by_ids(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "bob", {"shop": ("reader",)})
    shop = project_named(svc, "shop")
    body = password_body({"id": user_id}, PASSWORD, {"project": {"id": shop}})
    reply = client.post(TOKENS, json=body)
    assert reply.status_code == 201
    view = reply.get_json()["token"]
    assert (view["user"]["id"], view["project"]["id"]) == (user_id, shop)
    assert [r["name"] for r in view["roles"]] == ["reader"]
    by_domain_id = password_body(
        {"name": "bob", "domain": {"id": "default"}},
        PASSWORD,
        {"project": {"name": "shop", "domain": {"id": "default"}}},
    )
    assert client.post(TOKENS, json=by_domain_id).status_code == 201


def test_a_wrong_password_and_an_unknown_user_fail_alike(client: FlaskClient, svc: Any) -> None:
    add_user(svc, "cy", {"shop": ("member",)})
    wrong = assert_keystone_error(log_in(client, "cy", "shop", "not-" + PASSWORD), 401)
    unknown = assert_keystone_error(log_in(client, "nobody", "shop"), 401)
    no_password = client.post(
        TOKENS,
        json={
            "auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "cy"}}}}
        },
    )
    assert wrong == unknown == assert_keystone_error(no_password, 401)
    assert PASSWORD not in wrong


def test_a_disabled_user_or_another_domain_cannot_log_in(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "dee", {"shop": ("member",)})
    other_domain = password_body({"name": "dee", "domain": {"name": "Elsewhere"}}, PASSWORD)
    assert_keystone_error(client.post(TOKENS, json=other_domain), 401)
    with svc.db.session() as session:
        session.get(User, user_id).enabled = False
    assert_keystone_error(log_in(client, "dee", "shop"), 401)


def test_no_role_on_the_project_or_no_such_project_is_401(client: FlaskClient, svc: Any) -> None:
    add_user(svc, "eve", {"shop": ("member",)})
    project_named(svc, "vault")
    assert "no role" in assert_keystone_error(log_in(client, "eve", "vault"), 401)
    assert_keystone_error(log_in(client, "eve", "no-such-project"), 401)
    with svc.db.session() as session:
        session.scalars(select(Project).where(Project.name == "shop")).one().enabled = False
    assert_keystone_error(log_in(client, "eve", "shop"), 401)


def test_no_scope_means_the_default_project_else_an_unscoped_token(
    client: FlaskClient, svc: Any
) -> None:
    add_user(svc, "fay", {"shop": ("member",)}, default_project="shop")
    add_user(svc, "gus", {"shop": ("reader",)})
    add_user(svc, "hal", {"shop": ("reader",)}, default_project=project_named(svc, "empty"))
    shop = project_named(svc, "shop")

    scoped = client.post(TOKENS, json=password_body({"name": "fay"}, PASSWORD))
    assert scoped.status_code == 201
    assert scoped.get_json()["token"]["project"]["id"] == shop

    for name in ("gus", "hal"):  # hal's default project gives it no role: as Keystone, unscoped
        reply = client.post(TOKENS, json=password_body({"name": name}, PASSWORD))
        assert reply.status_code == 201, reply.get_json()
        view = reply.get_json()["token"]
        assert not {"project", "roles", "catalog"} & set(view)
        token = reply.headers["X-Subject-Token"]
        assert instances(client, token, shop).status_code == 403
        mine = client.get(f"{V3}/auth/projects", headers={"X-Auth-Token": token})
        assert [p["name"] for p in mine.get_json()["projects"]] == ["shop"]
        no_catalog = client.get(f"{V3}/auth/catalog", headers={"X-Auth-Token": token})
        assert_keystone_error(no_catalog, 401)

    explicit = client.post(TOKENS, json=password_body({"name": "fay"}, PASSWORD, "unscoped"))
    assert explicit.status_code == 201
    assert "project" not in explicit.get_json()["token"]


def test_nocatalog_leaves_the_catalog_out(client: FlaskClient, svc: Any) -> None:
    add_user(svc, "ida", {"shop": ("member",)})
    body = password_body({"name": "ida"}, PASSWORD, by_name("shop"))
    reply = client.post(f"{TOKENS}?nocatalog", json=body)
    assert reply.status_code == 201
    assert "catalog" not in reply.get_json()["token"]


# --- application credentials -----------------------------------------------------------


def make_credential(client: FlaskClient, token: str, user_id: str, **fields: Any) -> dict[str, Any]:
    reply = client.post(
        f"{V3}/users/{user_id}/application_credentials",
        json={"application_credential": {"name": "ci", **fields}},
        headers={"X-Auth-Token": token},
    )
    assert reply.status_code == 201, reply.get_json()
    found: dict[str, Any] = reply.get_json()["application_credential"]
    return found


def credential_body(part: dict[str, Any], scope: object = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {"methods": ["application_credential"], "application_credential": part}
    }
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def test_an_application_credential_logs_in_by_id_or_by_name_with_its_roles(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "jo", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    made = make_credential(
        client, token_of(client, "jo", "shop"), user_id, roles=[{"name": "reader"}]
    )
    assert [r["name"] for r in made["roles"]] == ["reader"]  # member includes reader

    by_id = client.post(TOKENS, json=credential_body({"id": made["id"], "secret": made["secret"]}))
    assert by_id.status_code == 201, by_id.get_json()
    view = by_id.get_json()["token"]
    assert view["methods"] == ["application_credential"]
    assert view["project"]["id"] == shop
    assert [r["name"] for r in view["roles"]] == ["reader"]
    assert view["application_credential"]["id"] == made["id"]
    token = by_id.headers["X-Subject-Token"]
    assert instances(client, token, shop).status_code == 200
    write = client.post(
        f"/v1.0/{shop}/instances", json={"instance": {}}, headers={"X-Auth-Token": token}
    )
    assert write.status_code == 403  # a reader may not change anything

    part = {"name": "ci", "user": {"name": "jo", "domain": DEFAULT}, "secret": made["secret"]}
    by_name_ = client.post(TOKENS, json=credential_body(part, {"project": {"id": shop}}))
    assert by_name_.status_code == 201
    assert by_name_.get_json()["token"]["user"]["id"] == user_id


def test_a_credential_without_roles_gets_all_its_makers_roles_and_no_more(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "kit", {"shop": ("reader", "member")})
    made = make_credential(client, token_of(client, "kit", "shop"), user_id)
    assert [r["name"] for r in made["roles"]] == ["member", "reader"]
    part = {"id": made["id"], "secret": made["secret"]}
    assert client.post(TOKENS, json=credential_body(part)).status_code == 201
    with svc.db.session() as session:  # the maker loses member: so does the credential
        member = session.scalars(select(Role).where(Role.name == "member")).one()
        session.delete(
            session.get(RoleAssignment, (user_id, project_named(svc, "shop"), member.id))
        )
    reply = client.post(TOKENS, json=credential_body(part))
    assert [r["name"] for r in reply.get_json()["token"]["roles"]] == ["reader"]


def test_a_wrong_secret_or_another_project_is_401(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "lou", {"shop": ("member",), "deli": ("member",)})
    made = make_credential(client, token_of(client, "lou", "shop"), user_id)
    wrong = credential_body({"id": made["id"], "secret": made["secret"][::-1]})
    message = assert_keystone_error(client.post(TOKENS, json=wrong), 401)
    assert made["secret"] not in message
    unknown = credential_body({"id": "0" * 32, "secret": made["secret"]})
    assert assert_keystone_error(client.post(TOKENS, json=unknown), 401) == message
    no_user = credential_body({"name": "ci", "secret": made["secret"]})
    assert_keystone_error(client.post(TOKENS, json=no_user), 401)
    elsewhere = credential_body({"id": made["id"], "secret": made["secret"]}, by_name("deli"))
    assert_keystone_error(client.post(TOKENS, json=elsewhere), 401)
    for scope in ("unscoped", ["shop"], 7, {"project": "shop"}, {"domain": DEFAULT}):
        odd = credential_body({"id": made["id"], "secret": made["secret"]}, scope)
        assert_keystone_error(client.post(TOKENS, json=odd), 401)
    own = credential_body({"id": made["id"], "secret": made["secret"]}, by_name("shop"))
    assert client.post(TOKENS, json=own).status_code == 201


def test_a_deleted_credential_and_its_tokens_stop_working(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "max", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    user_token = token_of(client, "max", "shop")
    made = make_credential(client, user_token, user_id)
    part = {"id": made["id"], "secret": made["secret"]}
    token = client.post(TOKENS, json=credential_body(part)).headers["X-Subject-Token"]
    assert instances(client, token, shop).status_code == 200
    gone = client.delete(
        f"{V3}/users/{user_id}/application_credentials/{made['id']}",
        headers={"X-Auth-Token": user_token},
    )
    assert gone.status_code == 204
    assert instances(client, token, shop).status_code == 401
    assert_keystone_error(client.post(TOKENS, json=credential_body(part)), 401)
    assert instances(client, user_token, shop).status_code == 200  # the user's own token stays


def test_an_expired_credential_is_401_and_its_tokens_end_with_it(
    client: FlaskClient, svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = add_user(svc, "ned", {"shop": ("member",)})
    end = (utcnow() + dt.timedelta(minutes=10)).replace(microsecond=0)
    made = make_credential(
        client, token_of(client, "ned", "shop"), user_id, expires_at=end.isoformat() + "Z"
    )
    part = {"id": made["id"], "secret": made["secret"]}
    reply = client.post(TOKENS, json=credential_body(part))
    assert when(reply.get_json()["token"]["expires_at"]) == end  # not the hour of a token

    later = utcnow() + dt.timedelta(minutes=11)
    monkeypatch.setattr("cellar.identity.store.utcnow", lambda: later)
    assert "expired" in assert_keystone_error(client.post(TOKENS, json=credential_body(part)), 401)


def test_a_credentials_token_can_neither_rescope_nor_make_credentials(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "ola", {"shop": ("member",), "deli": ("member",)})
    made = make_credential(client, token_of(client, "ola", "shop"), user_id)
    part = {"id": made["id"], "secret": made["secret"]}
    token = client.post(TOKENS, json=credential_body(part)).headers["X-Subject-Token"]
    assert_keystone_error(client.post(TOKENS, json=token_body(token, by_name("deli"))), 401)
    again = client.post(
        f"{V3}/users/{user_id}/application_credentials",
        json={"application_credential": {"name": "ci2"}},
        headers={"X-Auth-Token": token},
    )
    assert_keystone_error(again, 403)


# --- token (rescoping) -------------------------------------------------------------------


def token_body(token: str, scope: object = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"identity": {"methods": ["token"], "token": {"id": token}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def test_a_token_rescopes_to_a_project_the_user_has_a_role_on(
    client: FlaskClient, svc: Any
) -> None:
    add_user(svc, "pam", {"shop": ("member",), "deli": ("reader",)})
    project_named(svc, "vault")
    first = log_in(client, "pam", "shop")
    old = first.headers["X-Subject-Token"]
    reply = client.post(TOKENS, json=token_body(old, by_name("deli")))
    assert reply.status_code == 201
    view = reply.get_json()["token"]
    assert view["project"]["name"] == "deli"
    assert [r["name"] for r in view["roles"]] == ["reader"]
    assert view["methods"] == ["password"]
    assert when(view["expires_at"]) <= when(first.get_json()["token"]["expires_at"])
    deli = project_named(svc, "deli")
    assert instances(client, reply.headers["X-Subject-Token"], deli).status_code == 200
    assert_keystone_error(client.post(TOKENS, json=token_body(old, by_name("vault"))), 401)


def test_an_unscoped_token_rescopes_and_a_revoked_one_does_not(
    client: FlaskClient, svc: Any
) -> None:
    add_user(svc, "quin", {"shop": ("member",)})
    unscoped = client.post(TOKENS, json=password_body({"name": "quin"}, PASSWORD))
    token = unscoped.headers["X-Subject-Token"]
    reply = client.post(TOKENS, json=token_body(token, by_name("shop")))
    assert reply.status_code == 201
    revoked = client.delete(TOKENS, headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert revoked.status_code == 204
    assert_keystone_error(client.post(TOKENS, json=token_body(token, by_name("shop"))), 401)
    assert_keystone_error(client.post(TOKENS, json=token_body("garbage")), 401)


# --- validating, revoking, expiry --------------------------------------------------------


def test_validate_shows_the_token_and_revoke_ends_it_at_once(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "rae", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    token, other = token_of(client, "rae", "shop"), token_of(client, "rae", "shop")
    both = {"X-Auth-Token": other, "X-Subject-Token": token}

    shown = client.get(TOKENS, headers=both)
    assert shown.status_code == 200
    assert shown.headers["X-Subject-Token"] == token
    view = shown.get_json()["token"]
    assert (view["user"]["id"], view["project"]["id"]) == (user_id, shop)
    assert client.head(TOKENS, headers=both).status_code == 200
    assert_keystone_error(client.get(TOKENS, headers={"X-Auth-Token": other}), 400)

    assert client.delete(TOKENS, headers=both).status_code == 204
    assert instances(client, token, shop).status_code == 401
    assert_keystone_error(client.get(TOKENS, headers=both), 404)
    assert instances(client, other, shop).status_code == 200  # only that token


def test_only_its_user_or_an_admin_may_see_a_token(client: FlaskClient, svc: Any) -> None:
    add_user(svc, "sam", {"shop": ("member",)})
    add_user(svc, "tess", {"shop": ("member",)})
    sams = token_of(client, "sam", "shop")
    theirs = {"X-Auth-Token": token_of(client, "tess", "shop"), "X-Subject-Token": sams}
    assert_keystone_error(client.get(TOKENS, headers=theirs), 403)
    assert_keystone_error(client.delete(TOKENS, headers=theirs), 403)
    admins = {"X-Auth-Token": admin_token(svc), "X-Subject-Token": sams}
    assert client.get(TOKENS, headers=admins).status_code == 200
    assert client.delete(TOKENS, headers=admins).status_code == 204
    assert instances(client, sams, project_named(svc, "shop")).status_code == 401


def test_an_expired_token_is_401(
    client: FlaskClient, svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(svc, "uma", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    token = token_of(client, "uma", "shop")
    later = utcnow() + dt.timedelta(seconds=svc.settings.token_ttl + 1)
    monkeypatch.setattr("api.auth.utcnow", lambda: later)
    reply = instances(client, token, shop)
    assert reply.status_code == 401
    assert "expired" in reply.get_json()["unauthorized"]["message"]
    monkeypatch.setattr("api.identity.tokens.utcnow", lambda: later)
    assert_keystone_error(client.post(TOKENS, json=token_body(token, by_name("shop"))), 401)


def test_the_token_lifetime_follows_the_settings(svc: Any) -> None:
    import dataclasses

    short = dataclasses.replace(svc, settings=dataclasses.replace(svc.settings, token_ttl=90.0))
    client = create_app(short).test_client()
    add_user(svc, "vic", {"shop": ("member",)})
    view = log_in(client, "vic", "shop").get_json()["token"]
    lasts = when(view["expires_at"]) - when(view["issued_at"])
    assert abs(lasts.total_seconds() - 90.0) < 0.01


def test_tokens_of_another_key_and_garbage_are_401(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "wes", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    now = utcnow()
    forged = TokenSealer([Fernet.generate_key()]).seal(
        Sealed(
            user_id=user_id,
            project_id=shop,
            methods=("password",),
            issued_at=now,
            expires_at=now + dt.timedelta(hours=1),
            audit_id=new_audit_id(),
        )
    )
    real = token_of(client, "wes", "shop")
    tampered = real[:-8] + ("A" if real[-8] != "A" else "B") + real[-7:]
    for bad in (forged, tampered, "garbage", "x" * 300, "gAAAAA"):
        assert instances(client, bad, shop).get_json()["unauthorized"]["code"] == 401
        assert_keystone_error(client.get(f"{V3}/users", headers={"X-Auth-Token": bad}), 401)
    assert instances(client, real, shop).status_code == 200


def test_a_token_counts_only_while_its_user_keeps_a_role(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "xan", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    token = token_of(client, "xan", "shop")
    with svc.db.session() as session:
        session.query(RoleAssignment).filter_by(user_id=user_id).delete()
    assert instances(client, token, shop).status_code == 401


# --- password changes ----------------------------------------------------------------------


def test_an_admin_setting_a_password_revokes_the_users_older_tokens(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "yan", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    old_token = token_of(client, "yan", "shop")
    admin = admin_token(svc)
    reply = client.patch(
        f"{V3}/users/{user_id}",
        json={"user": {"password": "n3w-Secret-pass"}},
        headers={"X-Auth-Token": admin},
    )
    assert reply.status_code == 200
    assert instances(client, old_token, shop).status_code == 401
    assert_keystone_error(log_in(client, "yan", "shop"), 401)
    fresh = log_in(client, "yan", "shop", "n3w-Secret-pass")
    assert fresh.status_code == 201
    assert instances(client, fresh.headers["X-Subject-Token"], shop).status_code == 200
    assert client.get(f"{V3}/users", headers={"X-Auth-Token": admin}).status_code == 200


def test_a_user_changes_their_own_password_with_the_original(client: FlaskClient, svc: Any) -> None:
    user_id = add_user(svc, "zed", {"shop": ("member",)})
    shop = project_named(svc, "shop")
    token = token_of(client, "zed", "shop")
    path = f"{V3}/users/{user_id}/password"
    mine = {"X-Auth-Token": token}
    wrong = {"user": {"original_password": "guess", "password": "n3w-Secret-pass"}}
    assert_keystone_error(client.post(path, json=wrong, headers=mine), 403)
    assert_keystone_error(
        client.patch(
            f"{V3}/users/{user_id}", json={"user": {"password": "x-Y-z-1234"}}, headers=mine
        ),
        403,
    )
    right = {"user": {"original_password": PASSWORD, "password": "n3w-Secret-pass"}}
    assert client.post(path, json=right, headers=mine).status_code == 204
    assert instances(client, token, shop).status_code == 401
    assert_keystone_error(log_in(client, "zed", "shop"), 401)
    assert log_in(client, "zed", "shop", "n3w-Secret-pass").status_code == 201

    add_user(svc, "zoe", {"shop": ("member",)})
    theirs = {"X-Auth-Token": token_of(client, "zoe", "shop")}
    again = {"user": {"original_password": "n3w-Secret-pass", "password": "hijacked-1234"}}
    assert_keystone_error(client.post(path, json=again, headers=theirs), 403)
    assert log_in(client, "zed", "shop", "hijacked-1234").status_code == 401


# --- bad logins ------------------------------------------------------------------------------

BAD_LOGINS: list[tuple[Any, int]] = [
    (None, 400),
    ([], 400),
    ({}, 400),
    ({"auth": None}, 400),
    ({"auth": {}}, 400),
    ({"auth": {"identity": []}}, 400),
    ({"auth": {"identity": {"methods": "password"}}}, 400),
    ({"auth": {"identity": {"methods": []}}}, 400),
    ({"auth": {"identity": {"methods": ["kerberos"], "kerberos": {}}}}, 400),
    ({"auth": {"identity": {"methods": ["password"]}}}, 400),
    ({"auth": {"identity": {"methods": ["password", "token"], "password": {}, "token": {}}}}, 400),
    ({"auth": {"identity": {"methods": [{}], "password": {}}}}, 400),
    ({"auth": {"identity": {"methods": ["token"], "token": {}}}}, 400),
    ({"auth": {"identity": {"methods": ["token"], "token": {"id": 5}}}}, 400),
    ({"auth": {"identity": {"methods": ["password"], "password": None}}}, 401),
    ({"auth": {"identity": {"methods": ["password"], "password": {"user": "ada"}}}}, 401),
    (password_body({"name": ["ada"]}, PASSWORD), 401),
    (password_body({"name": "ada", "domain": "Default"}, PASSWORD), 401),
    (password_body({"id": {"x": 1}}, PASSWORD), 401),
    (password_body({"name": "ada"}, 12345), 401),
    (password_body({"name": "ada"}, PASSWORD, {"project": "shop"}), 401),
    (password_body({"name": "ada"}, PASSWORD, {"project": {"name": 5}}), 401),
    (password_body({"name": "ada"}, PASSWORD, {"domain": {"name": "Default"}}), 401),
    (password_body({"name": "ada"}, PASSWORD, ["shop"]), 401),
    (password_body({"name": "ada"}, PASSWORD, 7), 401),
    (credential_body({}), 401),
    (credential_body({"id": ["x"], "secret": "s"}), 401),
    (credential_body({"name": "ci", "user": "ada", "secret": "s"}), 401),
    (
        {
            "auth": {
                "identity": {"methods": ["application_credential"], "application_credential": 5}
            }
        },
        401,
    ),
    (credential_body({"id": "x", "secret": "s"}, "unscoped"), 401),
    (credential_body({"id": "x", "secret": "s"}, ["shop"]), 401),
    (credential_body({"id": "x", "secret": "s"}, {"project": "shop"}), 401),
    (token_body("garbage", "unscoped"), 401),
]


@pytest.mark.parametrize(("body", "code"), BAD_LOGINS)
def test_bad_logins_get_a_clear_4xx(client: FlaskClient, svc: Any, body: Any, code: int) -> None:
    add_user(svc, "ada", {"shop": ("member",)})
    reply = client.post(TOKENS, json=body)
    assert_keystone_error(reply, code)


def test_a_login_body_that_is_not_json_gets_400_or_415(client: FlaskClient) -> None:
    assert_keystone_error(
        client.post(TOKENS, data="{not json", content_type="application/json"), 400
    )
    reply = client.post(TOKENS, data="auth=1", content_type="application/x-www-form-urlencoded")
    assert reply.status_code == 415


# --- audit -------------------------------------------------------------------------------------


def audit_rows(svc: Any) -> list[dict[str, Any]]:
    with svc.db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        columns = [c.key for c in inspect(AuditEvent).mapper.column_attrs]
        return [{c: getattr(row, c) for c in columns} for row in rows]


def test_logins_are_audited_without_the_password_or_the_token(
    client: FlaskClient, svc: Any
) -> None:
    user_id = add_user(svc, "abe", {"shop": ("member",), "deli": ("member",)})
    good = log_in(client, "abe", "shop")
    token = good.headers["X-Subject-Token"]
    wrong_password = "Wr0ng-" + PASSWORD
    assert log_in(client, "abe", "shop", wrong_password).status_code == 401
    rescoped = client.post(TOKENS, json=token_body(token, by_name("deli")))
    assert rescoped.status_code == 201
    assert client.post(TOKENS, json=token_body(token + "x", by_name("deli"))).status_code == 401
    made = make_credential(client, token, user_id)
    part = {"id": made["id"], "secret": made["secret"]}
    cred_token = client.post(TOKENS, json=credential_body(part)).headers["X-Subject-Token"]
    bad_secret = credential_body({"id": made["id"], "secret": "wrong-" + made["secret"]})
    assert client.post(TOKENS, json=bad_secret).status_code == 401

    rows = audit_rows(svc)
    logins = [r for r in rows if r["action"] == "identity.login"]
    failed = [r for r in rows if r["action"] == "identity.login_failed"]
    assert len(logins) == 3 and len(failed) == 3
    assert logins[0]["user_id"] == user_id and logins[0]["outcome"] == "201"
    assert logins[0]["project_id"] == project_named(svc, "shop")
    assert failed[0]["details"]["as"] == "abe" and failed[0]["outcome"] == "401"
    assert {r["details"]["method"] for r in failed} == {
        "password",
        "token",
        "application_credential",
    }

    secrets = [
        PASSWORD,
        wrong_password,
        made["secret"],
        token,
        rescoped.headers["X-Subject-Token"],
        cred_token,
    ]
    for row in rows:
        text = json.dumps(row, default=str)
        for secret in secrets:
            assert secret not in text, (row["action"], secret)
            assert secret[:40] not in text, (row["action"], "a part of a secret")
