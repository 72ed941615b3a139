"""HTTPS for the API: the settings that turn it on, the certificate Cellar issues for
itself, and the URLs and CA that the clients are given."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from cryptography import x509

from cellar import pki
from cellar import settings as settings_module
from cellar.cli.main import keystone_for, parser
from cellar.identity.bootstrap import openrc_path, refresh_openrc, write_openrc
from cellar.serve import api_names, api_verify, commands


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CELLAR_TLS", "CELLAR_TLS_CERT", "CELLAR_TLS_KEY", "CELLAR_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_plain_http_unless_asked(home: Path) -> None:
    settings = settings_module.load()
    assert not settings.api_tls and settings.api_tls_files is None
    assert settings.identity_url.startswith("http://")
    assert "--certfile" not in commands(settings)["api"]


def test_auto_serves_a_certificate_of_cellars_ca(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_TLS", "auto")
    settings = settings_module.load()
    cert, key = settings.api_tls_files or (Path(), Path())
    assert settings.identity_url == "https://127.0.0.1:8779/identity/v3"
    api = commands(settings)["api"]
    assert api[api.index("--certfile") + 1] == str(cert)
    authority = pki.Authority.from_home(home)
    assert pki.ensure_api_files(authority, cert, key, api_names(settings))
    assert not pki.ensure_api_files(authority, cert, key, api_names(settings))  # kept
    made = x509.load_pem_x509_certificate(cert.read_bytes())
    names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert key.stat().st_mode & 0o777 == 0o600
    assert pki.ensure_api_files(authority, cert, key, ["db.example.test"])  # a new name
    assert api_verify(settings) == str(home / "ca.crt")


def test_bad_tls_settings_are_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLAR_TLS", "maybe")
    with pytest.raises(ValueError, match="auto or off"):
        settings_module.load()
    monkeypatch.setenv("CELLAR_TLS", "")
    monkeypatch.setenv("CELLAR_TLS_CERT", "/some/cert.pem")
    with pytest.raises(ValueError, match="together"):
        settings_module.load()
    monkeypatch.setenv("CELLAR_TLS_KEY", "/some/key.pem")
    given = settings_module.load()
    assert given.api_tls_files == (Path("/some/cert.pem"), Path("/some/key.pem"))


def test_the_openrc_follows_https_and_names_the_ca(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_openrc(settings_module.load(), "the-password")
    assert "OS_CACERT" not in openrc_path(settings_module.load()).read_text()
    monkeypatch.setenv("CELLAR_TLS", "auto")
    settings = settings_module.load()
    refresh_openrc(settings)
    text = openrc_path(settings).read_text()
    assert "export OS_AUTH_URL=https://127.0.0.1:8779/identity/v3\n" in text
    assert f"export OS_CACERT={home / 'ca.crt'}\n" in text
    assert "export OS_PASSWORD=the-password\n" in text


def test_the_cli_checks_https_with_the_ca_it_is_given(tmp_path: Path) -> None:
    args = parser().parse_args(["instance", "list"])
    environ = {
        "OS_AUTH_URL": "https://db.example.test/identity/v3",
        "OS_USERNAME": "a",
        "OS_PASSWORD": "p",
        "OS_CACERT": "/etc/cellar/ca.crt",
        "HOME": str(tmp_path),
    }
    keystone = keystone_for(args, environ, None, requests.Session())
    assert keystone.verify == "/etc/cellar/ca.crt"
    environ.pop("OS_CACERT")
    assert keystone_for(args, environ, None, requests.Session()).verify is True
