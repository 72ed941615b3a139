"""Validated tokens are remembered for a moment: a change to identities made through this
process counts at once, one made elsewhere once the moment has passed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from api.app import create_app
from api.auth import Auth, LocalValidator
from api.token_cache import CachedValidator
from cellar.errors import Unauthorized
from cellar.identity.models import Role, RoleAssignment, User
from cellar.identity.store import Identity
from cellar.identity.tokens import TokenSealer
from cellar.models import utcnow
from tests.unit.api.support import admin_token, logged_in, member_of

V3 = "/identity/v3"
INSTANCES = "/v1.0/proj1/instances"


def identity(expires_in: float = 3600.0) -> Identity:
    now = utcnow()
    return Identity(
        user_id="u1",
        user_name="ann",
        project_id="proj1",
        project_name="proj1",
        roles=("member",),
        role_ids=("r1",),
        methods=("password",),
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=expires_in),
        audit_id="a1",
    )


@dataclasses.dataclass
class Store:
    """A validator that counts its calls and answers what it is told to."""

    answer: Identity | None = None
    calls: int = 0
    during: Any = None  # called in the middle of a validation

    def validate(self, token: str) -> Identity:
        self.calls += 1
        if self.during is not None:
            self.during()
        if self.answer is None:
            raise Unauthorized("the token is not valid")
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_asked_about_once_a_moment() -> None:
    store, clock = Store(identity()), Clock()
    cache = CachedValidator(store, keep=2.0, clock=clock)
    assert cache.validate("t1") == cache.validate("t1") == store.answer
    assert store.calls == 1
    cache.validate("t2")
    assert store.calls == 2
    clock.now += 2.0
    cache.validate("t1")
    assert store.calls == 3


def test_a_refusal_is_never_remembered() -> None:
    store = Store(None)
    cache = CachedValidator(store, clock=Clock())
    for _ in range(2):
        with pytest.raises(Unauthorized):
            cache.validate("t1")
    assert store.calls == 2


def test_a_token_is_not_remembered_past_its_expiry() -> None:
    store = Store(identity(expires_in=-1.0))
    cache = CachedValidator(store, clock=Clock())
    cache.validate("t1")
    cache.validate("t1")
    assert store.calls == 2


def test_forget_drops_everything_even_a_validation_under_way() -> None:
    store = Store(identity())
    cache = CachedValidator(store, clock=Clock())
    cache.validate("t1")
    cache.forget()
    cache.validate("t1")
    assert store.calls == 2
    store.during = cache.forget  # a change committed while "t2" was being looked up
    cache.validate("t2")
    store.during = None
    cache.validate("t2")
    assert store.calls == 4


def test_the_cache_holds_at_most_its_bound() -> None:
    clock = Clock()
    cache = CachedValidator(Store(identity()), keep=2.0, most=3, clock=clock)
    for n in range(10):
        cache.validate(f"t{n}")
        clock.now += 0.5
    assert len(cache._seen) <= 3


def test_threads_share_one_cache() -> None:
    store = Store(identity())
    cache = CachedValidator(store, clock=Clock())
    cache.validate("t1")
    threads = [threading.Thread(target=cache.validate, args=("t1",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.calls == 1


def user_of(services: Any, token: str) -> str:
    return TokenSealer.from_home(services.settings.home).open(token, utcnow()).user_id


def role_id(services: Any, name: str) -> str:
    with services.db.session() as session:
        return str(session.scalars(select(Role.id).where(Role.name == name)).one())


@pytest.fixture
def services(world: Any) -> Any:
    return world[0]


@pytest.fixture
def client(services: Any) -> FlaskClient:
    return create_app(services).test_client()


def test_a_role_taken_away_here_counts_at_once(client: FlaskClient, services: Any) -> None:
    token = member_of(services)
    user_id = user_of(services, token)
    mine = {"X-Auth-Token": token}
    assert client.get(INSTANCES, headers=mine).status_code == 200  # now remembered
    path = f"{V3}/projects/proj1/users/{user_id}/roles/{role_id(services, 'member')}"
    admin = {"X-Auth-Token": admin_token(services)}
    assert client.delete(path, headers=admin).status_code == 204
    assert client.get(INSTANCES, headers=mine).status_code == 401


def test_a_user_disabled_here_counts_at_once(client: FlaskClient, services: Any) -> None:
    token = member_of(services)
    mine = {"X-Auth-Token": token}
    assert client.get(INSTANCES, headers=mine).status_code == 200
    admin = {"X-Auth-Token": admin_token(services)}
    path = f"{V3}/users/{user_of(services, token)}"
    changed = client.patch(path, json={"user": {"enabled": False}}, headers=admin)
    assert changed.status_code == 200
    assert client.get(INSTANCES, headers=mine).status_code == 401


def test_a_login_keeps_what_is_remembered(services: Any) -> None:
    store = Store(identity())
    sealer = TokenSealer.from_home(services.settings.home)
    checks = Auth(services.settings, CachedValidator(store, clock=Clock()), sealer)
    client = logged_in(create_app(services, checks).test_client(), "t1")
    assert client.get(INSTANCES).status_code == 200
    nobody = {"name": "nobody", "domain": {"name": "Default"}, "password": "wrong"}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": nobody}}}}
    assert client.post(f"{V3}/auth/tokens", json=body).status_code == 401
    assert client.get(INSTANCES).status_code == 200
    assert store.calls == 1


def test_a_change_behind_the_api_counts_once_the_moment_has_passed(services: Any) -> None:
    token = member_of(services)
    clock = Clock()
    sealer = TokenSealer.from_home(services.settings.home)
    validator = CachedValidator(LocalValidator(services.db, sealer), keep=2.0, clock=clock)
    client = logged_in(
        create_app(services, Auth(services.settings, validator, sealer)).test_client(), token
    )
    assert client.get(INSTANCES).status_code == 200
    with services.db.session() as session:  # as another API process or the CLI would
        session.execute(
            delete(RoleAssignment).where(RoleAssignment.user_id == user_of(services, token))
        )
        assert session.get(User, user_of(services, token)) is not None
    assert client.get(INSTANCES).status_code == 200  # still remembered
    clock.now += 2.0
    assert client.get(INSTANCES).status_code == 401


def test_a_token_revoked_in_another_process_is_refused_at_once(services: Any) -> None:
    """Two API processes share the metadata: a revoke in one counts in the other at its
    very next request, though that one remembered the token a moment ago."""
    token = member_of(services)
    here, there = (create_app(services).test_client() for _ in range(2))
    mine = {"X-Auth-Token": token}
    assert there.get(INSTANCES, headers=mine).status_code == 200  # remembered there
    revoke = here.delete(f"{V3}/auth/tokens", headers={**mine, "X-Subject-Token": token})
    assert revoke.status_code == 204
    assert there.get(INSTANCES, headers=mine).status_code == 401
    assert here.get(INSTANCES, headers=mine).status_code == 401
