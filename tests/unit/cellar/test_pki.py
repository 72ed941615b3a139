"""Cellar's CA: made once and kept private, or the operator's; short-lived certificates
that name what they are for, renewed when a third of their life is left."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import insert

from cellar import agent_tls, pki
from cellar.models import Instance
from taskmanager import certificates
from tests.unit.cellar.test_view_changes import ROWS


def parsed(issued: pki.Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.certificate)


def test_the_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = pki.Authority.from_home(home)
    again = pki.Authority.from_home(home)
    assert first.pem == again.pem
    assert stat.S_IMODE((home / "ca.key").stat().st_mode) == 0o600
    basic = first.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca


def test_the_operators_ca_is_used_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = pki.Authority.from_home(tmp_path / "operator")
    monkeypatch.setenv("CELLAR_CA_CERT", str(tmp_path / "operator" / "ca.crt"))
    monkeypatch.setenv("CELLAR_CA_KEY", str(tmp_path / "operator" / "ca.key"))
    assert pki.Authority.from_home(tmp_path / "home").pem == theirs.pem
    assert not (tmp_path / "home" / "ca.key").exists()
    monkeypatch.delenv("CELLAR_CA_KEY")
    with pytest.raises(ValueError, match="together"):
        pki.Authority.from_home(tmp_path / "home")


def test_an_agents_certificate_names_its_instance_and_serves(tmp_path: Path) -> None:
    authority = pki.Authority.from_home(tmp_path)
    made = parsed(authority.agent("inst-1"))
    names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["inst-1.agent.cellar"]
    assert made.subject.rfc4514_string() == "CN=cellar agent inst-1"
    usages = made.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert made.not_valid_after_utc - made.not_valid_before_utc <= pki.LEAF_LIFE + pki.SKEW
    control = parsed(authority.control_plane())
    assert control.subject.rfc4514_string() == f"CN={agent_tls.CONTROL_PLANE}"
    usages = control.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_certificate_is_due_once_a_third_of_its_life_is_left(tmp_path: Path) -> None:
    issued = pki.Authority.from_home(tmp_path).control_plane()
    life = issued.not_after - issued.not_before
    assert not issued.due()
    assert not issued.due(issued.not_before + life * 0.6)
    assert issued.due(issued.not_before + life * 0.7)
    assert issued.due(issued.not_after + dt.timedelta(seconds=1))


def test_the_control_plane_certificate_is_issued_again_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = pki.ControlPlane(pki.Authority.from_home(tmp_path))
    first = holder.current()
    assert holder.current() is first
    monkeypatch.setattr(pki.Issued, "due", lambda self, now=None: True)
    assert holder.current().certificate != first.certificate


def test_agent_files_are_private_and_written_again_only_when_needed(tmp_path: Path) -> None:
    authority = pki.Authority.from_home(tmp_path / "home")
    folder = pki.agent_folder(tmp_path / "home", "inst-1")
    assert pki.ensure_agent_files(authority, folder, "inst-1")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (agent_tls.CERT, agent_tls.KEY, agent_tls.CA):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert not pki.ensure_agent_files(authority, folder, "inst-1")
    assert pki.ensure_agent_files(authority, folder, "inst-2")  # another instance's
    held = pki.read_agent_files(folder)
    assert held is not None
    names = parsed(held).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["inst-2.agent.cellar"]


def test_the_engine_certificate_names_every_address_and_carries_the_policy(
    tmp_path: Path,
) -> None:
    authority = pki.Authority.from_home(tmp_path / "home")
    folder = tmp_path / "tls"
    names = ["cellar-inst-1", "db.example", "127.0.0.1", "::1"]
    assert pki.ensure_engine_files(authority, folder, names, required=True)
    held = pki.Issued.read(
        (folder / pki.ENGINE_CERT).read_bytes(), (folder / pki.ENGINE_KEY).read_bytes()
    )
    san = parsed(held).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cellar-inst-1", "db.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    usage = parsed(held).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert (folder / pki.ENGINE_POLICY).read_text().strip() == '{"required": true}'
    for name in (pki.ENGINE_CERT, pki.ENGINE_KEY, pki.ENGINE_POLICY):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert not pki.ensure_engine_files(authority, folder, names, required=True)
    assert pki.ensure_engine_files(authority, folder, names, required=False)  # policy only
    assert (folder / pki.ENGINE_CERT).read_bytes() == held.certificate
    assert pki.ensure_engine_files(authority, folder, [*names, "10.0.0.5"])  # a new name
    assert (folder / pki.ENGINE_CERT).read_bytes() != held.certificate


def test_the_beat_renews_what_is_due_and_removes_what_is_left(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = world[0]
    home = services.settings.home
    with services.db.session() as session:
        session.execute(insert(Instance).values(**ROWS["instances"][1]))
    authority = pki.Authority.from_home(home)
    live, gone = pki.agent_folder(home, "i-1"), pki.agent_folder(home, "i-gone")
    certificates.ensure(authority, services.settings, "i-1", required=False)
    pki.ensure_agent_files(authority, gone, "i-gone")
    before = (live / agent_tls.CERT).read_bytes()
    assert certificates.renew(services) == 0
    assert (live / agent_tls.CERT).read_bytes() == before and gone.exists()  # gone is new
    old = 1_000_000_000
    os.utime(gone, (old, old))
    monkeypatch.setattr(pki.Issued, "due", lambda self, now=None: True)
    assert certificates.renew(services) == 1
    assert (live / agent_tls.CERT).read_bytes() != before
    assert (live / pki.ENGINE_CERT).exists()
    assert not gone.exists()
