"""The CLI against Cellar's own API (the Flask app, in process, on fakes): log in with
the admin-openrc that the first start writes, manage projects, users, roles and
application credentials, and log in with one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from requests.structures import CaseInsensitiveDict

from api.app import create_app
from cellar.cli import main as cli
from cellar.identity.bootstrap import bootstrap, openrc_path


class InProcess(requests.Session):
    """Hands every request to the Flask app's test client."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.client = app.test_client()

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        verify: str | bool = True,
    ) -> requests.Response:
        parts = urlsplit(url)
        answer = self.client.open(
            parts.path,
            method=method,
            base_url=f"{parts.scheme}://{parts.netloc}",
            query_string=params,
            json=json,
            headers=headers,
        )
        made = requests.Response()
        made.status_code = answer.status_code
        made._content = answer.get_data()
        made.headers = CaseInsensitiveDict(dict(answer.headers))
        made.url = url
        return made


@pytest.fixture
def http(world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InProcess:
    """Cellar's API, with the OS_* variables of its admin-openrc set."""
    services = world[0]
    bootstrap(services.settings, services.db)
    for name in list(os.environ):
        if name.startswith("OS_") or name == "CELLAR_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for line in openrc_path(services.settings).read_text().splitlines():
        name, _sep, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(name, value)
    return InProcess(create_app(services))


def run(http: InProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = cli.main(["-f", "json", *argv], http=http)
    shown = capsys.readouterr()
    assert code == 0, shown.err
    return json.loads(shown.out) if shown.out.strip() else None


def test_an_admin_makes_a_team_whose_program_logs_in_with_a_credential(
    http: InProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["login"], http=http) == 0
    assert capsys.readouterr().out.startswith("logged in as admin (")

    project = run(http, capsys, "project", "create", "books")
    run(http, capsys, "user", "create", "bob", "--password", "B0b-pass-word", "--project", "books")
    run(http, capsys, "role", "add", "--project", "books", "--user", "bob", "member")
    (granted,) = run(http, capsys, "role", "assignments", "--user", "bob")
    assert granted["role"]["name"] == "member"
    assert granted["scope"]["project"]["id"] == project["id"]

    for name, value in (("OS_USERNAME", "bob"), ("OS_PASSWORD", "B0b-pass-word")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OS_PROJECT_NAME", "books")
    assert run(http, capsys, "instance", "list") == []
    made = run(http, capsys, "credential", "create", "ci", "--role", "reader")
    assert made["secret"] and made["project_id"] == project["id"]

    for name in ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OS_AUTH_TYPE", "v3applicationcredential")
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_ID", made["id"])
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_SECRET", made["secret"])
    assert run(http, capsys, "instance", "list") == []
    assert cli.main(["logout"], http=http) == 0
    assert "revoked" in capsys.readouterr().out
