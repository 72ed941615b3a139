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
