"""The identity API's directory: projects, users, roles and their assignments, and
application credentials; who may manage each, and bad input answered 4xx, never 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from api.app import create_app
from cellar.identity.bootstrap import bootstrap
from cellar.identity.models import ApplicationCredential, Project, Role, RoleAssignment, User
from cellar.identity.passwords import check_password
from tests.unit.api.support import admin_token

V3 = "/identity/v3"
PASSWORD = "s3cret-Enough-pass"


@pytest.fixture
def svc(world: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CELLAR_TOKEN_KEY", raising=False)
    bootstrap(world[0].settings, world[0].db)
    return world[0]


@pytest.fixture
def client(svc: Any) -> FlaskClient:
    return create_app(svc).test_client()


@pytest.fixture
def admin(svc: Any) -> dict[str, str]:
    return {"X-Auth-Token": admin_token(svc)}


def ok(reply: TestResponse, code: int = 200) -> Any:
    assert reply.status_code == code, reply.get_json()
    return reply.get_json()


def error(reply: TestResponse, code: int) -> str:
    assert reply.status_code == code, reply.get_json()
    found = reply.get_json()["error"]
    assert found["code"] == code and found["message"]
    return str(found["message"])


def new_project(client: FlaskClient, admin: dict[str, str], name: str) -> str:
    reply = client.post(f"{V3}/projects", json={"project": {"name": name}}, headers=admin)
    return str(ok(reply, 201)["project"]["id"])


def new_user(client: FlaskClient, admin: dict[str, str], name: str, **fields: Any) -> str:
    body = {"user": {"name": name, "password": PASSWORD, **fields}}
    return str(ok(client.post(f"{V3}/users", json=body, headers=admin), 201)["user"]["id"])


def role_id(svc: Any, name: str) -> str:
    with svc.db.session() as session:
        return session.scalars(select(Role.id).where(Role.name == name)).one()


def grant(
    client: FlaskClient, admin: dict[str, str], project: str, user: str, role: str
) -> TestResponse:
    return client.put(f"{V3}/projects/{project}/users/{user}/roles/{role}", headers=admin)


def member(
    client: FlaskClient, admin: dict[str, str], svc: Any, name: str, project: str
) -> tuple[str, dict[str, str]]:
    """A new user with the member role on ``project``, and its token's headers."""
    user = new_user(client, admin, name)
    ok(grant(client, admin, project, user, role_id(svc, "member")), 204)
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": user, "password": PASSWORD}},
            },
            "scope": {"project": {"id": project}},
        }
    }
    reply = client.post(f"{V3}/auth/tokens", json=body)
    assert reply.status_code == 201, reply.get_json()
    return user, {"X-Auth-Token": reply.headers["X-Subject-Token"]}


# --- projects ----------------------------------------------------------------------------


def test_projects_are_created_listed_shown_and_filtered(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    reply = client.post(
        f"{V3}/projects",
        json={"project": {"name": "shop", "description": "the shop", "domain_id": "default"}},
        headers=admin,
    )
    made = ok(reply, 201)["project"]
    assert made["name"] == "shop" and made["description"] == "the shop"
    assert made["enabled"] is True and made["domain_id"] == "default"
    assert len(made["id"]) == 32
    new_project(client, admin, "deli")

    names = [p["name"] for p in ok(client.get(f"{V3}/projects", headers=admin))["projects"]]
    assert names == ["admin", "deli", "shop"]
    only = ok(client.get(f"{V3}/projects?name=shop", headers=admin))["projects"]
    assert [p["id"] for p in only] == [made["id"]]
    assert ok(client.get(f"{V3}/projects?name=none", headers=admin))["projects"] == []
    shown = ok(client.get(f"{V3}/projects/{made['id']}", headers=admin))["project"]
    assert shown == made
    assert "Could not find project" in error(client.get(f"{V3}/projects/nope", headers=admin), 404)


def test_a_duplicate_project_name_is_409(client: FlaskClient, admin: dict[str, str]) -> None:
    new_project(client, admin, "shop")
    deli = new_project(client, admin, "deli")
    again = client.post(f"{V3}/projects", json={"project": {"name": "shop"}}, headers=admin)
    assert "shop" in error(again, 409)
    renamed = client.patch(
        f"{V3}/projects/{deli}", json={"project": {"name": "shop"}}, headers=admin
    )
    assert "shop" in error(renamed, 409)
    same = client.patch(f"{V3}/projects/{deli}", json={"project": {"name": "deli"}}, headers=admin)
    assert ok(same)["project"]["name"] == "deli"


def test_deleting_a_project_removes_its_assignments_and_credentials(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    user, headers = member(client, admin, svc, "ann", shop)
    ok(
        client.post(
            f"{V3}/users/{user}/application_credentials",
            json={"application_credential": {"name": "ci"}},
            headers=headers,
        ),
        201,
    )
    assert client.delete(f"{V3}/projects/{shop}", headers=admin).status_code == 204
    with svc.db.session() as session:
        assert session.scalars(select(RoleAssignment).filter_by(project_id=shop)).all() == []
        assert session.scalars(select(ApplicationCredential).filter_by(user_id=user)).all() == []
        assert session.get(User, user) is not None  # the user stays
    assert client.get(f"/v1.0/{shop}/instances", headers=headers).status_code == 401
    error(client.get(f"{V3}/projects/{shop}", headers=admin), 404)
    error(client.delete(f"{V3}/projects/{shop}", headers=admin), 404)


def test_the_admin_project_can_be_neither_deleted_disabled_nor_renamed(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    [found] = ok(client.get(f"{V3}/projects?name=admin", headers=admin))["projects"]
    path = f"{V3}/projects/{found['id']}"
    error(client.delete(path, headers=admin), 403)
    error(client.patch(path, json={"project": {"enabled": False}}, headers=admin), 403)
    error(client.patch(path, json={"project": {"name": "root"}}, headers=admin), 403)
    assert ok(client.get(f"{V3}/users", headers=admin))["users"]  # the admin is still an admin
    with svc.db.session() as session:
        assert session.get(Project, found["id"]).name == "admin"


def test_the_admin_user_keeps_its_name(client: FlaskClient, admin: dict[str, str]) -> None:
    [found] = ok(client.get(f"{V3}/users?name=admin", headers=admin))["users"]
    path = f"{V3}/users/{found['id']}"
    error(client.patch(path, json={"user": {"name": "root"}}, headers=admin), 403)
    assert ok(client.get(path, headers=admin))["user"]["name"] == "admin"


def test_disabling_a_project_ends_its_tokens(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    _user, headers = member(client, admin, svc, "ben", shop)
    assert client.get(f"/v1.0/{shop}/instances", headers=headers).status_code == 200
    off = client.patch(f"{V3}/projects/{shop}", json={"project": {"enabled": False}}, headers=admin)
    assert ok(off)["project"]["enabled"] is False
    assert client.get(f"/v1.0/{shop}/instances", headers=headers).status_code == 401
    shown = ok(client.get(f"{V3}/projects?enabled=false", headers=admin))["projects"]
    assert [p["name"] for p in shown] == ["shop"]


# --- users -----------------------------------------------------------------------------------


def test_users_are_created_without_keeping_the_password(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    reply = client.post(
        f"{V3}/users",
        json={
            "user": {
                "name": "cleo",
                "password": PASSWORD,
                "email": "cleo@example.com",
                "description": "ops",
                "default_project_id": shop,
                "domain_id": "default",
            }
        },
        headers=admin,
    )
    made = ok(reply, 201)["user"]
    assert made["name"] == "cleo" and made["email"] == "cleo@example.com"
    assert made["default_project_id"] == shop and made["enabled"] is True
    assert "password" not in made and PASSWORD not in reply.get_data(as_text=True)
    with svc.db.session() as session:
        row = session.get(User, made["id"])
        assert row is not None and row.password_hash is not None
        assert PASSWORD not in row.password_hash and row.password_hash.startswith("scrypt$")
        assert check_password(PASSWORD, row.password_hash)
    assert ok(client.get(f"{V3}/users/{made['id']}", headers=admin))["user"] == made


def test_users_are_listed_filtered_updated_and_deleted(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    dan, dans = member(client, admin, svc, "dan", shop)
    new_user(client, admin, "dora")
    names = [u["name"] for u in ok(client.get(f"{V3}/users", headers=admin))["users"]]
    assert names == ["admin", "dan", "dora"]
    assert [u["id"] for u in ok(client.get(f"{V3}/users?name=dan", headers=admin))["users"]] == [
        dan
    ]

    changed = client.patch(
        f"{V3}/users/{dan}",
        json={"user": {"email": "dan@example.com", "description": "on call"}},
        headers=admin,
    )
    view = ok(changed)["user"]
    assert view["email"] == "dan@example.com" and view["description"] == "on call"
    assert client.get(f"/v1.0/{shop}/instances", headers=dans).status_code == 200  # no revoke

    off = client.patch(f"{V3}/users/{dan}", json={"user": {"enabled": False}}, headers=admin)
    assert ok(off)["user"]["enabled"] is False
    assert client.get(f"/v1.0/{shop}/instances", headers=dans).status_code == 401
    ok(client.patch(f"{V3}/users/{dan}", json={"user": {"enabled": True}}, headers=admin))
    assert client.get(f"/v1.0/{shop}/instances", headers=dans).status_code == 401  # still revoked

    assert client.delete(f"{V3}/users/{dan}", headers=admin).status_code == 204
    error(client.get(f"{V3}/users/{dan}", headers=admin), 404)
    error(client.delete(f"{V3}/users/{dan}", headers=admin), 404)
    with svc.db.session() as session:
        assert session.scalars(select(RoleAssignment).filter_by(user_id=dan)).all() == []


def test_deleting_a_user_revokes_its_tokens(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    eli, headers = member(client, admin, svc, "eli", shop)
    assert client.get(f"{V3}/users/{eli}", headers=headers).status_code == 200
    assert client.delete(f"{V3}/users/{eli}", headers=admin).status_code == 204
    assert client.get(f"/v1.0/{shop}/instances", headers=headers).status_code == 401
    error(client.get(f"{V3}/users/{eli}", headers=headers), 401)
    again = new_user(client, admin, "eli")  # the name is free again, for a new user
    assert again != eli


def test_an_admin_can_neither_delete_nor_disable_themselves(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    [me] = ok(client.get(f"{V3}/users?name=admin", headers=admin))["users"]
    error(client.delete(f"{V3}/users/{me['id']}", headers=admin), 403)
    off = {"user": {"enabled": False}}
    error(client.patch(f"{V3}/users/{me['id']}", json=off, headers=admin), 403)
    assert ok(client.get(f"{V3}/users/{me['id']}", headers=admin))["user"]["enabled"] is True


def test_duplicate_user_names_are_409(client: FlaskClient, admin: dict[str, str]) -> None:
    new_user(client, admin, "fred")
    gwen = new_user(client, admin, "gwen")
    error(client.post(f"{V3}/users", json={"user": {"name": "fred"}}, headers=admin), 409)
    renamed = client.patch(f"{V3}/users/{gwen}", json={"user": {"name": "fred"}}, headers=admin)
    assert "fred" in error(renamed, 409)


# --- roles and assignments ---------------------------------------------------------------------


def test_roles_are_cellars_three(client: FlaskClient, admin: dict[str, str], svc: Any) -> None:
    roles = ok(client.get(f"{V3}/roles", headers=admin))["roles"]
    assert [r["name"] for r in roles] == ["admin", "member", "reader"]
    [reader] = ok(client.get(f"{V3}/roles?name=reader", headers=admin))["roles"]
    assert reader["id"] == role_id(svc, "reader")
    assert ok(client.get(f"{V3}/roles/{reader['id']}", headers=admin))["role"] == reader
    error(client.get(f"{V3}/roles/nope", headers=admin), 404)


def test_role_assignments_are_added_listed_and_removed(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop, deli = new_project(client, admin, "shop"), new_project(client, admin, "deli")
    hana = new_user(client, admin, "hana")
    ivo = new_user(client, admin, "ivo")
    reader, member_ = role_id(svc, "reader"), role_id(svc, "member")
    assert grant(client, admin, shop, hana, reader).status_code == 204
    assert grant(client, admin, shop, hana, reader).status_code == 204  # again: no change
    assert grant(client, admin, deli, hana, "member").status_code == 204  # by name
    assert grant(client, admin, shop, ivo, member_).status_code == 204

    path = f"{V3}/projects/{shop}/users/{hana}/roles"
    assert client.get(f"{path}/{reader}", headers=admin).status_code == 204
    error(client.get(f"{path}/{member_}", headers=admin), 404)
    assert [r["name"] for r in ok(client.get(path, headers=admin))["roles"]] == ["reader"]

    listed = ok(client.get(f"{V3}/role_assignments?user.id={hana}", headers=admin))
    pairs = {(a["scope"]["project"]["id"], a["role"]["id"]) for a in listed["role_assignments"]}
    assert pairs == {(shop, reader), (deli, member_)}
    assert "name" not in listed["role_assignments"][0]["role"]
    on_shop = ok(client.get(f"{V3}/role_assignments?scope.project.id={shop}", headers=admin))
    assert {a["user"]["id"] for a in on_shop["role_assignments"]} == {hana, ivo}
    named = ok(
        client.get(
            f"{V3}/role_assignments?user.id={hana}&scope.project.id={shop}&include_names",
            headers=admin,
        )
    )["role_assignments"]
    assert [
        (a["user"]["name"], a["scope"]["project"]["name"], a["role"]["name"]) for a in named
    ] == [("hana", "shop", "reader")]

    assert client.delete(f"{path}/{reader}", headers=admin).status_code == 204
    error(client.delete(f"{path}/{reader}", headers=admin), 404)
    assert ok(client.get(path, headers=admin))["roles"] == []


def test_assignments_name_unknown_projects_users_and_roles_404(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop, jan = new_project(client, admin, "shop"), new_user(client, admin, "jan")
    reader = role_id(svc, "reader")
    assert "project" in error(grant(client, admin, "nope", jan, reader), 404)
    assert "user" in error(grant(client, admin, shop, "nope", reader), 404)
    assert "role" in error(grant(client, admin, shop, jan, "nope"), 404)


def test_an_admin_keeps_their_own_admin_role(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    [me] = ok(client.get(f"{V3}/users?name=admin", headers=admin))["users"]
    [project] = ok(client.get(f"{V3}/projects?name=admin", headers=admin))["projects"]
    path = f"{V3}/projects/{project['id']}/users/{me['id']}/roles/{role_id(svc, 'admin')}"
    error(client.delete(path, headers=admin), 403)


# --- application credentials -----------------------------------------------------------------


def test_application_credentials_show_their_secret_once(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    kai, headers = member(client, admin, svc, "kai", shop)
    path = f"{V3}/users/{kai}/application_credentials"
    made = ok(
        client.post(
            path,
            json={"application_credential": {"name": "ci", "description": "the CI job"}},
            headers=headers,
        ),
        201,
    )["application_credential"]
    assert len(made["secret"]) >= 32
    assert made["project_id"] == shop and made["user_id"] == kai
    chosen = ok(
        client.post(
            path,
            json={"application_credential": {"name": "mine", "secret": "a-secret-of-my-own!"}},
            headers=headers,
        ),
        201,
    )["application_credential"]
    assert chosen["secret"] == "a-secret-of-my-own!"

    listed = ok(client.get(path, headers=headers))["application_credentials"]
    assert [c["name"] for c in listed] == ["ci", "mine"]
    assert all("secret" not in c for c in listed)
    shown = ok(client.get(f"{path}/{made['id']}", headers=headers))["application_credential"]
    assert "secret" not in shown and shown["description"] == "the CI job"
    assert [
        c["id"]
        for c in ok(client.get(f"{path}?name=ci", headers=headers))["application_credentials"]
    ] == [made["id"]]
    with svc.db.session() as session:
        row = session.get(ApplicationCredential, made["id"])
        assert row is not None and made["secret"] not in row.secret_hash
        assert check_password(made["secret"], row.secret_hash)

    error(client.post(path, json={"application_credential": {"name": "ci"}}, headers=headers), 409)
    assert client.delete(f"{path}/{made['id']}", headers=headers).status_code == 204
    error(client.get(f"{path}/{made['id']}", headers=headers), 404)
    error(client.delete(f"{path}/{made['id']}", headers=headers), 404)


def test_credentials_are_their_users_own(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    lea, leas = member(client, admin, svc, "lea", shop)
    _moe, moes = member(client, admin, svc, "moe", shop)
    path = f"{V3}/users/{lea}/application_credentials"
    made = ok(
        client.post(path, json={"application_credential": {"name": "ci"}}, headers=leas), 201
    )["application_credential"]
    body = {"application_credential": {"name": "sneaky"}}
    error(client.post(path, json=body, headers=moes), 403)
    error(client.post(path, json=body, headers=admin), 403)  # not even an admin makes one
    error(client.get(path, headers=moes), 403)
    error(client.get(f"{path}/{made['id']}", headers=moes), 403)
    error(client.delete(f"{path}/{made['id']}", headers=moes), 403)
    assert [c["id"] for c in ok(client.get(path, headers=admin))["application_credentials"]] == [
        made["id"]
    ]
    assert client.delete(f"{path}/{made['id']}", headers=admin).status_code == 204


def test_a_credential_gets_only_roles_its_maker_holds(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    ned, headers = member(client, admin, svc, "ned", shop)
    path = f"{V3}/users/{ned}/application_credentials"

    def make(roles: object) -> TestResponse:
        body = {"application_credential": {"name": "ci", "roles": roles}}
        return client.post(path, json=body, headers=headers)

    assert "admin" in error(make([{"name": "admin"}]), 403)
    error(make([{"name": "nope"}]), 404)
    error(make([{"id": "nope"}]), 404)
    error(make("reader"), 400)
    error(make([5]), 404)
    made = ok(make([{"id": role_id(svc, "member")}, {"name": "reader"}]), 201)
    assert [r["name"] for r in made["application_credential"]["roles"]] == ["member", "reader"]


# --- who may do what ---------------------------------------------------------------------------


def test_directory_writes_are_for_admins(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop = new_project(client, admin, "shop")
    other = new_user(client, admin, "nia")
    me, headers = member(client, admin, svc, "oz", shop)
    member_ = role_id(svc, "member")
    refused = [
        client.post(f"{V3}/projects", json={"project": {"name": "mine"}}, headers=headers),
        client.patch(f"{V3}/projects/{shop}", json={"project": {"name": "x"}}, headers=headers),
        client.delete(f"{V3}/projects/{shop}", headers=headers),
        client.post(f"{V3}/users", json={"user": {"name": "mine"}}, headers=headers),
        client.patch(f"{V3}/users/{other}", json={"user": {"email": "a@b.c"}}, headers=headers),
        client.patch(f"{V3}/users/{me}", json={"user": {"enabled": True}}, headers=headers),
        client.delete(f"{V3}/users/{other}", headers=headers),
        client.put(f"{V3}/projects/{shop}/users/{other}/roles/{member_}", headers=headers),
        client.put(f"{V3}/projects/{shop}/users/{me}/roles/admin", headers=headers),
        client.delete(f"{V3}/projects/{shop}/users/{me}/roles/{member_}", headers=headers),
    ]
    for reply in refused:
        error(reply, 403)
    with svc.db.session() as session:
        assert session.scalars(select(Project).where(Project.name == "mine")).first() is None
        assert session.get(User, other) is not None


def test_a_member_sees_only_themselves_and_their_projects(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    shop, deli = new_project(client, admin, "shop"), new_project(client, admin, "deli")
    other = new_user(client, admin, "pia")
    me, headers = member(client, admin, svc, "quy", shop)

    users = ok(client.get(f"{V3}/users", headers=headers))["users"]
    assert [u["id"] for u in users] == [me]  # none of the other users
    assert ok(client.get(f"{V3}/users?name=pia", headers=headers))["users"] == []
    error(client.get(f"{V3}/users/{other}", headers=headers), 403)
    assert ok(client.get(f"{V3}/users/{me}", headers=headers))["user"]["name"] == "quy"

    projects = ok(client.get(f"{V3}/projects", headers=headers))["projects"]
    assert [p["id"] for p in projects] == [shop]
    error(client.get(f"{V3}/projects/{deli}", headers=headers), 403)
    mine = ok(client.get(f"{V3}/users/{me}/projects", headers=headers))["projects"]
    assert [p["id"] for p in mine] == [shop]
    error(client.get(f"{V3}/users/{other}/projects", headers=headers), 403)

    error(client.get(f"{V3}/role_assignments?user.id={other}", headers=headers), 403)
    own = ok(client.get(f"{V3}/role_assignments", headers=headers))["role_assignments"]
    assert {a["user"]["id"] for a in own} == {me}
    error(client.get(f"{V3}/projects/{shop}/users/{other}/roles", headers=headers), 403)
    assert [
        r["name"]
        for r in ok(client.get(f"{V3}/projects/{shop}/users/{me}/roles", headers=headers))["roles"]
    ] == ["member"]


def test_a_member_of_the_admin_project_is_no_admin(
    client: FlaskClient, admin: dict[str, str], svc: Any
) -> None:
    [project] = ok(client.get(f"{V3}/projects?name=admin", headers=admin))["projects"]
    _me, headers = member(client, admin, svc, "rex", project["id"])
    error(client.post(f"{V3}/projects", json={"project": {"name": "x"}}, headers=headers), 403)
    assert len(ok(client.get(f"{V3}/users", headers=headers))["users"]) == 1


def test_the_directory_needs_a_token(client: FlaskClient, svc: Any) -> None:
    for path in ("/projects", "/users", "/roles", "/role_assignments", "/domains"):
        error(client.get(V3 + path), 401)
    assert client.get(V3).status_code == 200  # the version document is public
    assert client.get("/identity").status_code == 300


def test_the_one_domain(client: FlaskClient, admin: dict[str, str]) -> None:
    domains = ok(client.get(f"{V3}/domains", headers=admin))["domains"]
    assert [(d["id"], d["name"]) for d in domains] == [("default", "Default")]
    assert ok(client.get(f"{V3}/domains?name=Other", headers=admin))["domains"] == []
    assert ok(client.get(f"{V3}/domains/default", headers=admin))["domain"]["name"] == "Default"
    error(client.get(f"{V3}/domains/other", headers=admin), 404)


# --- bad input ---------------------------------------------------------------------------------

LONG = "n" * 65
BAD_WRITES: list[tuple[str, str, Any, int]] = [
    ("POST", "/projects", None, 400),
    ("POST", "/projects", [], 400),
    ("POST", "/projects", {"project": None}, 400),
    ("POST", "/projects", {"project": {}}, 400),
    ("POST", "/projects", {"project": {"name": 5}}, 400),
    ("POST", "/projects", {"project": {"name": ""}}, 400),
    ("POST", "/projects", {"project": {"name": LONG}}, 400),
    ("POST", "/projects", {"project": {"name": " shop"}}, 400),
    ("POST", "/projects", {"project": {"name": "a/b"}}, 400),
    ("POST", "/projects", {"project": {"name": "a\x00b"}}, 400),
    ("POST", "/projects", {"project": {"name": "x", "enabled": "yes"}}, 400),
    ("POST", "/projects", {"project": {"name": "x", "description": 5}}, 400),
    ("POST", "/projects", {"project": {"name": "x", "domain_id": "other"}}, 400),
    ("POST", "/projects", {"project": {"name": "admin"}}, 409),
    ("PATCH", "/projects/{project}", {"project": {"name": LONG}}, 400),
    ("PATCH", "/projects/{project}", {"project": {"enabled": 1}}, 400),
    ("PATCH", "/projects/{project}", {"project": {"name": None}}, 400),
    ("PATCH", "/projects/nope", {"project": {"name": "x"}}, 404),
    ("DELETE", "/projects/nope", None, 404),
    ("POST", "/users", {"user": {}}, 400),
    ("POST", "/users", {"user": {"name": ["x"]}}, 400),
    ("POST", "/users", {"user": {"name": LONG}}, 400),
    ("POST", "/users", {"user": {"name": "x", "password": 5}}, 400),
    ("POST", "/users", {"user": {"name": "x", "password": None}}, 400),
    ("POST", "/users", {"user": {"name": "x", "password": ""}}, 400),
    ("POST", "/users", {"user": {"name": "x", "password": "p" * 500}}, 400),
    ("POST", "/users", {"user": {"name": "x", "enabled": "no"}}, 400),
    ("POST", "/users", {"user": {"name": "x", "email": 5}}, 400),
    ("POST", "/users", {"user": {"name": "x", "default_project_id": "nope"}}, 404),
    ("POST", "/users", {"user": {"name": "x", "default_project_id": ["nope"]}}, 404),
    ("POST", "/users", {"user": {"name": "x", "domain_id": "other"}}, 400),
    ("POST", "/users", {"user": {"name": "admin"}}, 409),
    ("PATCH", "/users/{user}", {"user": {"password": ["x"]}}, 400),
    ("PATCH", "/users/{user}", {"user": {"name": LONG}}, 400),
    ("PATCH", "/users/{user}", {"user": {"enabled": "false"}}, 400),
    ("PATCH", "/users/{user}", {"user": {"email": {"a": 1}}}, 400),
    ("PATCH", "/users/{user}", {"user": {"default_project_id": "nope"}}, 404),
    ("PATCH", "/users/{user}", {"user": {"default_project_id": 7}}, 404),
    ("PATCH", "/users/{user}", {"user": {"default_project_id": {"id": 1}}}, 404),
    ("PATCH", "/users/{user}", "text", 400),
    ("PATCH", "/users/nope", {"user": {"email": "a@b.c"}}, 404),
    ("DELETE", "/users/nope", None, 404),
    ("PUT", "/projects/{project}/users/{user}/roles/nope", None, 404),
    ("DELETE", "/projects/{project}/users/{user}/roles/reader", None, 404),
    ("GET", "/users/nope", None, 404),
    ("GET", "/users/nope/projects", None, 404),
    ("GET", "/projects/{project}/users/nope/roles", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "code"), BAD_WRITES)
def test_bad_directory_requests_get_a_clear_4xx(
    client: FlaskClient,
    admin: dict[str, str],
    method: str,
    path: str,
    body: Any,
    code: int,
) -> None:
    project = new_project(client, admin, "shop")
    user = new_user(client, admin, "sue")
    url = V3 + path.format(project=project, user=user)
    kwargs: dict[str, Any] = {"headers": admin}
    if body is not None:
        kwargs["json"] = body
    reply = client.open(url, method=method, **kwargs)
    message = error(reply, code)
    assert "internal error" not in message


BAD_CREDENTIALS: list[tuple[Any, int]] = [
    (None, 400),
    ({"application_credential": "ci"}, 400),
    ({"application_credential": {}}, 400),
    ({"application_credential": {"name": 5}}, 400),
    ({"application_credential": {"name": "c" * 256}}, 400),
    ({"application_credential": {"name": "ci", "secret": "short"}}, 400),
    ({"application_credential": {"name": "ci", "secret": 12345678901234567}}, 400),
    ({"application_credential": {"name": "ci", "expires_at": "soon"}}, 400),
    ({"application_credential": {"name": "ci", "expires_at": 5}}, 400),
    ({"application_credential": {"name": "ci", "expires_at": "2001-01-01T00:00:00Z"}}, 400),
    ({"application_credential": {"name": "ci", "roles": {"name": "reader"}}}, 400),
    ({"application_credential": {"name": "ci", "roles": [None]}}, 404),
    ({"application_credential": {"name": "ci", "description": ["x"]}}, 400),
]


@pytest.mark.parametrize(("body", "code"), BAD_CREDENTIALS)
def test_bad_credential_requests_get_a_clear_4xx(
    client: FlaskClient, admin: dict[str, str], svc: Any, body: Any, code: int
) -> None:
    shop = new_project(client, admin, "shop")
    user, headers = member(client, admin, svc, "tom", shop)
    path = f"{V3}/users/{user}/application_credentials"
    reply = (
        client.post(path, json=body, headers=headers)
        if body
        else client.post(path, headers=headers)
    )
    assert "internal error" not in error(reply, code)
    with svc.db.session() as session:
        assert session.scalars(select(ApplicationCredential)).all() == []
