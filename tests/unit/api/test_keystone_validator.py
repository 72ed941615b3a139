"""Validation against a Keystone, with a fake of its session (the real one runs in the
production profile's integration tests)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from keystoneauth1 import exceptions as ks_exceptions

from api.keystone import KeystoneValidator, project_name
from cellar import settings as settings_module
from cellar.errors import Unauthorized, Unavailable


@dataclasses.dataclass
class Reply:
    status_code: int
    body: dict[str, Any]
    text: str = ""

    def json(self) -> dict[str, Any]:
        return self.body


class FakeSession:
    def __init__(self) -> None:
        self.replies: list[Reply | Exception] = []
        self.asked: list[str] = []

    def get(self, url: str, headers: dict[str, str], **_kwargs: Any) -> Reply:
        self.asked.append(headers["X-Subject-Token"])
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def _token(project: dict[str, Any], roles: tuple[str, ...] = ("member", "reader")) -> Reply:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    body = {
        "token": {
            "user": {"id": "u1", "name": "bob"},
            "project": project,
            "roles": [{"id": f"r-{r}", "name": r} for r in roles],
            "methods": ["password"],
            "issued_at": dt.datetime.now(dt.UTC).isoformat(),
            "expires_at": later.isoformat().replace("+00:00", "Z"),
            "audit_ids": ["a1"],
        }
    }
    return Reply(200, body)


@pytest.fixture
def validator(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> tuple[KeystoneValidator, Any]:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path))
    monkeypatch.setenv("CELLAR_AUTH_URL", "http://keystone.test/v3")
    monkeypatch.setenv("CELLAR_AUTH_CACHE", "60")
    session = FakeSession()
    return KeystoneValidator(settings_module.load(), session), session


def test_a_valid_token_names_its_bearer_and_is_kept_a_while(validator: Any) -> None:
    checker, session = validator
    session.replies.append(_token({"id": "p1", "name": "books", "domain": {"id": "default"}}))
    who = checker.validate("tok-1")
    assert (who.user_name, who.project_id, who.project_name) == ("bob", "p1", "books")
    assert who.has("member") and who.roles == ("member", "reader")
    assert checker.validate("tok-1") == who  # from the cache: Keystone asked once
    assert session.asked == ["tok-1"]


def test_a_refused_token_is_never_kept(validator: Any) -> None:
    checker, session = validator
    session.replies += [Reply(404, {}), Reply(404, {})]
    for _ in range(2):
        with pytest.raises(Unauthorized):
            checker.validate("revoked")
    assert session.asked == ["revoked", "revoked"]


def test_an_admin_project_of_another_domain_is_not_the_admin_project(validator: Any) -> None:
    checker, session = validator
    other = {"id": "p9", "name": "admin", "domain": {"id": "d2", "name": "acme"}}
    session.replies.append(_token(other, ("admin",)))
    assert checker.validate("tok").project_name == "admin@acme"
    assert project_name({"name": "admin", "domain": {"id": "default"}}) == "admin"


def test_keystone_refusing_cellar_is_a_503_not_the_callers_fault(validator: Any) -> None:
    checker, session = validator
    policy = Reply(403, {}, "You are not authorized to perform identity:validate_token")
    session.replies += [policy, ks_exceptions.Unauthorized("bad service password")]
    with pytest.raises(Unavailable, match="service role"):
        checker.validate("tok")
    with pytest.raises(Unavailable, match="CELLAR_AUTH_PASSWORD"):
        checker.validate("tok")


def test_keystone_down_is_a_503(validator: Any) -> None:
    checker, session = validator
    session.replies += [ks_exceptions.ConnectFailure("refused"), Reply(500, {})]
    for _ in range(2):
        with pytest.raises(Unavailable):
            checker.validate("tok")
