"""Cellar's first start: the three roles, the admin project and user, ``admin-openrc`` and
the token key, made once; and resetting the admin's password."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cellar.identity import store
from cellar.identity.bootstrap import bootstrap, openrc_path, reset_admin_password
from cellar.identity.models import Project, Role, RoleAssignment, User
from cellar.identity.passwords import check_password
from cellar.identity.tokens import BadToken, TokenSealer
from cellar.models import utcnow


@pytest.fixture
def svc(world: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CELLAR_TOKEN_KEY", raising=False)
    return world[0]


def openrc(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        assert line.startswith("export "), line
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = value
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bootstrap_makes_the_roles_the_admin_and_a_private_openrc(svc: Any) -> None:
    assert bootstrap(svc.settings, svc.db) is True
    path = openrc_path(svc.settings)
    assert path == svc.settings.home / "admin-openrc"
    assert mode(path) == 0o600
    values = openrc(path)
    assert values == {
        "OS_AUTH_URL": svc.settings.identity_url,
        "OS_USERNAME": "admin",
        "OS_PASSWORD": values["OS_PASSWORD"],
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_IDENTITY_API_VERSION": "3",
    }
    assert values["OS_AUTH_URL"] == "http://127.0.0.1:8779/identity/v3"
    password = values["OS_PASSWORD"]
    assert len(password) >= 20

    with svc.db.session() as session:
        assert sorted(session.scalars(select(Role.name))) == ["admin", "member", "reader"]
        user = session.scalars(select(User).where(User.name == "admin")).one()
        project = session.scalars(select(Project).where(Project.name == "admin")).one()
        assert user.default_project_id == project.id
        assert user.password_hash is not None and password not in user.password_hash
        assert check_password(password, user.password_hash)
        assert not check_password(password + "x", user.password_hash)
        assert [r.name for r in store.roles_on(session, user.id, project.id)] == ["admin"]
        assert store.password_login(session, {"name": "admin"}, password).id == user.id


def test_bootstrap_again_keeps_the_password_the_file_and_the_rows(svc: Any) -> None:
    assert bootstrap(svc.settings, svc.db) is True
    path = openrc_path(svc.settings)
    text = path.read_bytes()
    with svc.db.session() as session:
        before = session.scalars(select(User).where(User.name == "admin")).one().password_hash

    assert bootstrap(svc.settings, svc.db) is False
    assert bootstrap(svc.settings, svc.db) is False
    assert path.read_bytes() == text
    assert mode(path) == 0o600
    with svc.db.session() as session:
        assert session.scalars(select(User).where(User.name == "admin")).one().password_hash == (
            before
        )
        assert len(session.scalars(select(User)).all()) == 1
        assert len(session.scalars(select(Project)).all()) == 1
        assert len(session.scalars(select(Role)).all()) == 3
        assert len(session.scalars(select(RoleAssignment)).all()) == 1


def test_bootstrap_makes_a_missing_role_or_project_again(svc: Any) -> None:
    bootstrap(svc.settings, svc.db)
    with svc.db.session() as session:
        session.delete(session.scalars(select(Role).where(Role.name == "reader")).one())
    assert bootstrap(svc.settings, svc.db) is False
    with svc.db.session() as session:
        assert sorted(session.scalars(select(Role.name))) == ["admin", "member", "reader"]


def test_the_openrc_is_private_even_under_a_lax_umask(svc: Any) -> None:
    import os

    old = os.umask(0)
    try:
        bootstrap(svc.settings, svc.db)
    finally:
        os.umask(old)
    assert mode(openrc_path(svc.settings)) == 0o600


def test_the_token_key_file_is_private_and_kept(svc: Any) -> None:
    key_file = svc.settings.home / "token.key"
    assert not key_file.exists()
    first = TokenSealer.from_home(svc.settings.home)
    assert mode(key_file) == 0o600
    key = key_file.read_bytes()
    bootstrap(svc.settings, svc.db)
    with svc.db.session() as session:
        user = session.scalars(select(User)).one()
        project = session.scalars(select(Project)).one()
        token, _who = store.issue(session, first, user, project, ("password",), 60)
    again = TokenSealer.from_home(svc.settings.home)
    assert key_file.read_bytes() == key
    assert again.open(token, utcnow()).user_id == user.id


def test_a_key_from_the_environment_is_used_and_no_file_made(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("CELLAR_TOKEN_KEY", old)
    bootstrap(svc.settings, svc.db)
    with svc.db.session() as session:
        user = session.scalars(select(User)).one()
        project = session.scalars(select(Project)).one()
        token, _who = store.issue(
            session, TokenSealer.from_home(svc.settings.home), user, project, ("password",), 60
        )
    assert not (svc.settings.home / "token.key").exists()

    monkeypatch.setenv("CELLAR_TOKEN_KEY", f"{new}, {old}")  # a new key first: old tokens open
    rotated = TokenSealer.from_home(svc.settings.home)
    assert rotated.open(token, utcnow()).project_id == project.id
    monkeypatch.setenv("CELLAR_TOKEN_KEY", new)
    with pytest.raises(BadToken):
        TokenSealer.from_home(svc.settings.home).open(token, utcnow())


def test_reset_gives_a_new_password_and_ends_the_admins_tokens(svc: Any) -> None:
    bootstrap(svc.settings, svc.db)
    old = openrc(openrc_path(svc.settings))["OS_PASSWORD"]
    sealer = TokenSealer.from_home(svc.settings.home)
    with svc.db.session() as session:
        user = session.scalars(select(User)).one()
        project = session.scalars(select(Project)).one()
        token, _who = store.issue(session, sealer, user, project, ("password",), 60)

    path = reset_admin_password(svc.settings, svc.db)
    assert mode(path) == 0o600
    new = openrc(path)["OS_PASSWORD"]
    assert new != old
    with svc.db.session() as session:
        with pytest.raises(BadToken):
            store.resolve(session, sealer.open(token, utcnow()))
        assert store.password_login(session, {"name": "admin"}, new).name == "admin"
        with pytest.raises(BadToken):
            store.password_login(session, {"name": "admin"}, old)
    assert bootstrap(svc.settings, svc.db) is False
    assert openrc(openrc_path(svc.settings))["OS_PASSWORD"] == new
