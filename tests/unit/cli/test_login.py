"""Logging in as the OpenStack CLIs do, the kept token, and Cellar's URL from the catalog."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cellar.cli import main as cli
from cellar.cli.login import Credentials
from tests.unit.cli.support import API, AUTH_URL, PASSWORD, SECRET, FakeCloud

INSTANCES = f"{API}/p-1/instances"


def token_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "cellar").glob("token-*.json"))


def test_password_login_from_os_variables_finds_cellar_in_the_catalog(
    cloud: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    (login,) = cloud.logins()
    assert login.body == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "domain": {"name": "Default"}, "password": PASSWORD}
                },
            },
            "scope": {"project": {"name": "shop", "domain": {"name": "Default"}}},
        }
    }
    (listed,) = cloud.calls()
    assert (listed.method, listed.url, listed.token) == ("GET", INSTANCES, "tok-1")
    shown = capsys.readouterr()
    assert PASSWORD not in shown.out + shown.err and "tok-1" not in shown.out + shown.err


def test_the_token_is_kept_readable_by_its_owner_only_and_used_again(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    (kept,) = token_files(tmp_path)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert json.loads(kept.read_text())["token"] == "tok-1"
    assert PASSWORD not in kept.read_text()

    assert cli.main(["instance", "list"], http=cloud) == 0
    assert len(cloud.logins()) == 1
    assert [s.token for s in cloud.calls()] == ["tok-1", "tok-1"]


def test_a_kept_file_that_others_may_read_is_not_used(cloud: FakeCloud, tmp_path: Path) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    (kept,) = token_files(tmp_path)
    kept.chmod(0o644)
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert len(cloud.logins()) == 2
    assert stat.S_IMODE(token_files(tmp_path)[0].stat().st_mode) == 0o600


def test_each_user_and_project_has_its_own_token_file(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    monkeypatch.setenv("OS_PROJECT_NAME", "books")
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert len(token_files(tmp_path)) == 2
    assert len(cloud.logins()) == 2


def test_application_credential_login_by_id(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OS_AUTH_TYPE", "v3applicationcredential")
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_ID", "ac-1")
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_SECRET", SECRET)
    assert cli.main(["instance", "list"], http=cloud) == 0
    (login,) = cloud.logins()
    assert login.body == {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": "ac-1", "secret": SECRET},
            }
        }
    }
    assert cloud.calls()[0].url == INSTANCES  # the credential's project, from the token


def test_application_credential_login_by_name_names_its_user(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OS_PASSWORD")
    monkeypatch.setenv("OS_AUTH_TYPE", "v3applicationcredential")
    argv = ["--os-application-credential-name", "ci", "--os-application-credential-secret", SECRET]
    assert cli.main([*argv, "instance", "list"], http=cloud) == 0
    credential = cloud.logins()[0].body["auth"]["identity"]["application_credential"]
    assert credential == {
        "name": "ci",
        "secret": SECRET,
        "user": {"name": "alice", "domain": {"name": "Default"}},
    }


def test_os_options_win_over_the_variables(cloud: FakeCloud) -> None:
    argv = ["--os-project-id", "p-9", "--os-username", "bob", "instance", "list"]
    assert cli.main(argv, http=cloud) == 0
    auth = cloud.logins()[0].body["auth"]
    assert auth["scope"] == {"project": {"id": "p-9"}}
    assert auth["identity"]["password"]["user"]["name"] == "bob"


def test_a_token_about_to_expire_is_replaced(cloud: FakeCloud) -> None:
    cloud.ttl = 30  # within a minute of its end: not used again
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert len(cloud.logins()) == 2
    assert [s.token for s in cloud.calls()] == ["tok-1", "tok-2"]


def test_a_refused_kept_token_is_dropped_and_the_call_made_once_more(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    cloud.valid.clear()  # revoked on the server, e.g. by a password change
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert [s.token for s in cloud.calls()] == ["tok-1", "tok-1", "tok-2"]
    assert json.loads(token_files(tmp_path)[0].read_text())["token"] == "tok-2"


def test_a_new_token_refused_is_an_error_not_a_loop(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.accept = False
    assert cli.main(["instance", "list"], http=cloud) == 1
    assert (len(cloud.logins()), len(cloud.calls())) == (1, 1)
    assert "HTTP 401" in capsys.readouterr().err


def test_a_kept_token_refused_twice_is_tried_once_more_only(cloud: FakeCloud) -> None:
    assert cli.main(["instance", "list"], http=cloud) == 0
    cloud.accept = False
    assert cli.main(["instance", "list"], http=cloud) == 1
    assert [s.token for s in cloud.calls()] == ["tok-1", "tok-1", "tok-2"]


def test_a_wrong_password_says_so_without_showing_it(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OS_PASSWORD", "wrong-guess")
    assert cli.main(["instance", "list"], http=cloud) == 1
    err = capsys.readouterr().err
    assert "refused the login of user alice (HTTP 401)" in err
    assert "wrong-guess" not in err


def test_login_asks_for_the_password_and_says_who_where_until_when(
    cloud: FakeCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OS_PASSWORD")
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return PASSWORD

    monkeypatch.setattr(cli.getpass, "getpass", ask)
    assert cli.main(["login"], http=cloud) == 0
    assert asked == ["password for user alice: "]
    shown = capsys.readouterr()
    assert shown.out.startswith("logged in as alice (u-1) to project shop (p-1) until 20")
    assert PASSWORD not in shown.out + shown.err and "tok-1" not in shown.out + shown.err
    assert len(token_files(tmp_path)) == 1

    assert cli.main(["instance", "list"], http=cloud) == 0  # no password needed now
    assert len(cloud.logins()) == 1


def test_without_a_password_and_no_terminal_the_error_says_what_to_do(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OS_PASSWORD")
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: False, raising=False)
    assert cli.main(["instance", "list"], http=cloud) == 1
    assert "set OS_PASSWORD, or run 'cellar login'" in capsys.readouterr().err
    assert cloud.sent == []


def test_logout_revokes_the_kept_token_and_removes_it(
    cloud: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["login"], http=cloud) == 0
    assert cli.main(["logout"], http=cloud) == 0
    revoke = cloud.sent[-1]
    assert (revoke.method, revoke.url) == ("DELETE", f"{AUTH_URL}/auth/tokens")
    assert revoke.headers["X-Subject-Token"] == "tok-1" and revoke.token == "tok-1"
    assert cloud.valid == set() and token_files(tmp_path) == []
    assert cli.main(["logout"], http=cloud) == 0
    assert "no kept token for user alice" in capsys.readouterr().err
    assert len(cloud.sent) == 2


def test_no_auth_url_says_to_source_the_openrc(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OS_AUTH_URL")
    assert cli.main(["instance", "list"], http=cloud) == 1
    assert "OS_AUTH_URL" in capsys.readouterr().err


def test_url_given_uses_it_with_the_tokens_project(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_URL", "http://other.test:8779/")
    cloud.answers[("GET", "http://other.test:8779/v1.0/p-1/instances")] = (200, {"instances": []})
    assert cli.main(["instance", "list"], http=cloud) == 0
    assert cloud.sent[-1].url == "http://other.test:8779/v1.0/p-1/instances"


def test_with_a_url_and_no_auth_url_cellars_own_identity_api_is_used(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OS_AUTH_URL")
    assert cli.main(["--url", "http://cellar.test:8779", "login"], http=cloud) == 1
    assert cloud.sent[0].url == "http://cellar.test:8779/identity/v3/auth/tokens"


def test_a_catalog_without_cellar_asks_for_its_url(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.catalog = False
    assert cli.main(["instance", "list"], http=cloud) == 1
    assert "no public database endpoint" in capsys.readouterr().err


def test_the_interface_chooses_the_catalogs_endpoint(cloud: FakeCloud) -> None:
    cloud.answers[("GET", "http://internal.test/v1.0/p-1/instances")] = (200, {"instances": []})
    assert cli.main(["--os-interface", "internal", "instance", "list"], http=cloud) == 0
    assert cloud.sent[-1].url == "http://internal.test/v1.0/p-1/instances"


def test_no_secret_shows_in_the_credentials_repr() -> None:
    args = cli.parser().parse_args(["--os-application-credential-secret", SECRET, "limits"])
    found = Credentials.load(
        args, {"OS_AUTH_URL": AUTH_URL, "OS_USERNAME": "a", "OS_PASSWORD": PASSWORD}
    )
    assert PASSWORD not in repr(found) and SECRET not in repr(found)
    assert found.identity_url == AUTH_URL
    assert Credentials(auth_url="http://keystone.test/identity").identity_url == (
        "http://keystone.test/identity/v3"
    )
