"""``cellar instance show`` and ``cellar instance ca``: the CA that signs the engine's
certificate, from the instance's ssl route."""

from __future__ import annotations

import json

import pytest

from cellar.cli import main as cli
from tests.unit.cli.support import API, FakeCloud

BASE = f"{API}/p-1"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
VIEW = {"instance": {"id": "i-1", "name": "shop", "status": "ACTIVE"}}
SSL = {"ssl": {"ca_certificate": PEM, "required": True, "plaintext_refused": True}}


@pytest.fixture
def answered(cloud: FakeCloud) -> FakeCloud:
    cloud.answers[("GET", f"{BASE}/instances/i-1")] = (200, VIEW)
    cloud.answers[("GET", f"{BASE}/instances/i-1/ssl")] = (200, SSL)
    return cloud


def test_show_prints_the_policy_and_the_ca(
    answered: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["instance", "show", "i-1"], http=answered) == 0
    out = capsys.readouterr().out
    assert "required=True" in out and out.rstrip().endswith(PEM.strip())


def test_show_as_json_holds_the_ca_under_ssl(
    answered: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-f", "json", "instance", "show", "i-1"], http=answered) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "shop" and shown["ssl"]["ca_certificate"] == PEM


def test_ca_prints_the_pem_alone(answered: FakeCloud, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["instance", "ca", "i-1"], http=answered) == 0
    assert capsys.readouterr().out == PEM


def test_create_sends_the_access_and_the_tls_policy(cloud: FakeCloud) -> None:
    made = {"instance": {"id": "i-2", "name": "fenced", "status": "BUILD"}}
    cloud.answers[("POST", f"{BASE}/instances")] = (202, made)
    argv = ["instance", "create", "fenced", "--public", "--allowed-cidr", "10.0.0.0/24",
            "--allowed-cidr", "10.9.0.7", "--require-tls"]  # fmt: skip
    assert cli.main(argv, http=cloud) == 0
    body = next(s.body for s in cloud.sent if s.method == "POST" and s.url.endswith("/instances"))
    assert body["instance"]["access"] == {
        "is_public": True,
        "allowed_cidrs": ["10.0.0.0/24", "10.9.0.7"],
    }
    assert body["instance"]["tls"] == {"required": True}


@pytest.mark.parametrize(
    ("flags", "change"),
    [
        (["--allowed-cidr", "10.1.0.0/16"], {"access": {"allowed_cidrs": ["10.1.0.0/16"]}}),
        (["--any-source", "--tls", "optional"],
         {"access": {"allowed_cidrs": []}, "tls": {"required": False}}),
        (["--name", "orders"], {"name": "orders"}),
    ],
)  # fmt: skip
def test_update_sends_only_what_the_flags_change(
    cloud: FakeCloud, flags: list[str], change: dict[str, object]
) -> None:
    cloud.answers[("PUT", f"{BASE}/instances/i-1")] = (202, None)
    assert cli.main(["instance", "update", "i-1", *flags], http=cloud) == 0
    sent = [s for s in cloud.sent if s.method == "PUT"]
    assert [s.body for s in sent] == [{"instance": change}]


def test_update_without_a_change_is_an_error_that_sends_nothing(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["instance", "update", "i-1"], http=cloud) == 1
    assert "--allowed-cidr" in capsys.readouterr().err
    assert not [s for s in cloud.sent if s.method == "PUT"]
