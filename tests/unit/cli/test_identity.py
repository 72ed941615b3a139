"""``cellar project|user|role|credential``: thin calls of the identity API at OS_AUTH_URL."""

from __future__ import annotations

import json

import pytest

from cellar.cli import main as cli
from tests.unit.cli.support import AUTH_URL, FakeCloud

BOOKS = {"id": "p-2", "name": "books"}
BOB = {"id": "u-2", "name": "bob"}


def known(cloud: FakeCloud) -> None:
    """Project ``books`` and user ``bob``, found by name; role ``member`` too."""
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": [BOOKS]})
    cloud.answers[("GET", f"{AUTH_URL}/users")] = (200, {"users": [BOB]})
    cloud.answers[("GET", f"{AUTH_URL}/roles")] = (
        200,
        {"roles": [{"id": "r-m", "name": "member"}]},
    )


def identity_calls(cloud: FakeCloud) -> list[tuple[str, str, object]]:
    return [
        (s.method, s.url.removeprefix(AUTH_URL), s.params or s.body)
        for s in cloud.calls("id.test")
        if not s.url.endswith("/auth/tokens")
    ]


def test_project_create_sends_keystones_body(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.answers[("POST", f"{AUTH_URL}/projects")] = (201, {"project": BOOKS})
    argv = ["-f", "json", "project", "create", "books", "--description", "Book shop"]
    assert cli.main(argv, http=cloud) == 0
    assert identity_calls(cloud) == [
        (
            "POST",
            "/projects",
            {"project": {"name": "books", "enabled": True, "description": "Book shop"}},
        )
    ]
    assert json.loads(capsys.readouterr().out) == BOOKS
    assert cloud.calls("id.test")[-1].token == "tok-1"


def test_a_project_is_found_by_name_then_by_id(cloud: FakeCloud) -> None:
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": []})
    cloud.answers[("GET", f"{AUTH_URL}/projects/p-2")] = (200, {"project": BOOKS})
    cloud.answers[("DELETE", f"{AUTH_URL}/projects/p-2")] = (204, None)
    assert cli.main(["project", "delete", "p-2"], http=cloud) == 0
    assert identity_calls(cloud) == [
        ("GET", "/projects", {"name": "p-2"}),
        ("GET", "/projects/p-2", None),
        ("DELETE", "/projects/p-2", None),
    ]


def test_an_unknown_project_is_an_error(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": []})
    assert cli.main(["project", "show", "nope"], http=cloud) == 1
    assert "no project is named 'nope' or has that id" in capsys.readouterr().err


def test_user_create_with_a_default_project_by_name(cloud: FakeCloud) -> None:
    known(cloud)
    cloud.answers[("POST", f"{AUTH_URL}/users")] = (201, {"user": BOB})
    argv = ["user", "create", "bob", "--password", "S3cret-pass", "--project", "books"]
    assert cli.main(argv, http=cloud) == 0
    assert identity_calls(cloud)[-1] == (
        "POST",
        "/users",
        {
            "user": {
                "name": "bob",
                "enabled": True,
                "password": "S3cret-pass",
                "default_project_id": "p-2",
            }
        },
    )


def test_user_set_password_asks_twice_and_patches(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    known(cloud)
    cloud.answers[("PATCH", f"{AUTH_URL}/users/u-2")] = (200, {"user": BOB})
    monkeypatch.setattr("cellar.cli.identity.getpass.getpass", lambda _text: "N3w-pass")
    assert cli.main(["user", "set", "bob", "--password"], http=cloud) == 0
    assert identity_calls(cloud)[-1] == ("PATCH", "/users/u-2", {"user": {"password": "N3w-pass"}})
    shown = capsys.readouterr()
    assert "N3w-pass" not in shown.out + shown.err


def test_user_set_with_nothing_to_change_is_a_usage_error(cloud: FakeCloud) -> None:
    known(cloud)
    assert cli.main(["user", "set", "bob"], http=cloud) == 2


def test_role_add_and_remove_name_project_user_and_role_by_id(cloud: FakeCloud) -> None:
    known(cloud)
    path = f"{AUTH_URL}/projects/p-2/users/u-2/roles/r-m"
    cloud.answers[("PUT", path)] = (204, None)
    cloud.answers[("DELETE", path)] = (204, None)
    for action in ("add", "remove"):
        argv = ["role", action, "--project", "books", "--user", "bob", "member"]
        assert cli.main(argv, http=cloud) == 0
    changes = [c for c in identity_calls(cloud) if c[0] != "GET"]
    assert changes == [
        ("PUT", "/projects/p-2/users/u-2/roles/r-m", None),
        ("DELETE", "/projects/p-2/users/u-2/roles/r-m", None),
    ]


def test_role_assignments_filter_by_ids_and_show_names(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    known(cloud)
    assignment = {
        "role": {"id": "r-m", "name": "member"},
        "user": {"id": "u-2", "name": "bob"},
        "scope": {"project": {"id": "p-2", "name": "books"}},
    }
    found = {"role_assignments": [assignment]}
    cloud.answers[("GET", f"{AUTH_URL}/role_assignments")] = (200, found)
    assert cli.main(["role", "assignments", "--project", "books"], http=cloud) == 0
    assert identity_calls(cloud)[-1] == (
        "GET",
        "/role_assignments",
        {"include_names": "1", "scope.project.id": "p-2"},
    )
    assert capsys.readouterr().out.splitlines()[1].split() == ["member", "bob", "books"]


def test_credential_create_is_for_the_tokens_user_and_shows_the_secret_once(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    made = {"id": "ac-1", "name": "ci", "secret": "generated-secret", "roles": []}
    path = f"{AUTH_URL}/users/u-1/application_credentials"
    cloud.answers[("POST", path)] = (201, {"application_credential": made})
    argv = [
        "credential",
        "create",
        "ci",
        "--role",
        "reader",
        "--expiration",
        "2030-01-31T00:00:00Z",
    ]
    assert cli.main(argv, http=cloud) == 0
    assert identity_calls(cloud) == [
        (
            "POST",
            "/users/u-1/application_credentials",
            {
                "application_credential": {
                    "name": "ci",
                    "roles": [{"name": "reader"}],
                    "expires_at": "2030-01-31T00:00:00Z",
                }
            },
        )
    ]
    shown = capsys.readouterr()
    assert "generated-secret" in shown.out and "shown only now" in shown.err


def test_credential_delete_by_name(cloud: FakeCloud) -> None:
    path = f"{AUTH_URL}/users/u-1/application_credentials"
    listed = {"application_credentials": [{"id": "ac-1", "name": "ci"}]}
    cloud.answers[("GET", path)] = (200, listed)
    cloud.answers[("DELETE", f"{path}/ac-1")] = (204, None)
    assert cli.main(["credential", "delete", "ci"], http=cloud) == 0
    assert identity_calls(cloud)[-1] == ("DELETE", "/users/u-1/application_credentials/ac-1", None)
