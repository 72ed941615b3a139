"""The engine's TLS files: copied for the engine's user, taken up again when renewed,
and each engine's TLS settings."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from guestagent.engines import tls_settings
from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres_config import render_hba
from guestagent.engines.tls_files import CA, CERT, KEY, EngineTls, TlsFiles


def _source(folder: Path, required: bool | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in (("engine.crt", "cert"), ("engine.key", "key"), ("ca.crt", "ca")):
        (folder / name).write_text(text)
    if required is not None:
        (folder / "engine.json").write_text(json.dumps({"required": required}))
    return folder


def test_the_first_sync_copies_the_files_private_to_the_engine_user(tmp_path: Path) -> None:
    tls = EngineTls(_source(tmp_path / "src", True), OsUser("nobody"), tmp_path / "run" / "tls")
    assert tls.sync() is True
    files = tls.files()
    assert files == TlsFiles(tls.target / CERT, tls.target / KEY, tls.target / CA, True)
    nobody = pwd.getpwnam("nobody").pw_uid
    for path, text in ((files.cert, "cert"), (files.key, "key"), (files.ca, "ca")):
        info = os.lstat(path)
        assert (path.read_text(), info.st_uid, info.st_mode & 0o777) == (text, nobody, 0o600)
    folder = os.lstat(tls.target)
    assert (folder.st_uid, folder.st_mode & 0o777) == (os.geteuid(), 0o755)
    assert tls.sync() is False  # nothing changed since


def test_a_renewed_certificate_or_a_new_policy_is_taken_up(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    tls = EngineTls(source, OsUser(), tmp_path / "tls")
    tls.sync()
    assert tls.files() is not None and not tls.files().required  # type: ignore[union-attr]
    (source / "engine.crt").write_text("renewed")
    os.utime(source / "engine.crt", ns=(1, 1))
    assert tls.sync() is True
    assert (tls.target / CERT).read_text() == "renewed"
    (source / "engine.json").write_text('{"required": true}')
    assert tls.sync() is True and tls.files().required  # type: ignore[union-attr]


def test_without_certificate_or_source_the_engine_serves_no_tls(tmp_path: Path) -> None:
    off = EngineTls.off()
    assert off.sync() is True  # the first call always reports, so settings get written
    assert off.files() is None and off.sync() is False
    empty = EngineTls(tmp_path / "none", OsUser(), tmp_path / "tls")
    assert empty.sync() is True and empty.files() is None


def test_an_unreadable_policy_refuses_plaintext(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    (source / "engine.json").write_text("not json")
    tls = EngineTls(source, OsUser(), tmp_path / "tls")
    tls.sync()
    assert tls.files().required  # type: ignore[union-attr]


def test_a_symlink_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tls").symlink_to(elsewhere)
    tls = EngineTls(_source(tmp_path / "src"), OsUser(), tmp_path / "tls")
    with pytest.raises(OSError, match="not a folder"):
        tls.sync()
    assert list(elsewhere.iterdir()) == []


FILES = TlsFiles(Path("/run/c/server.crt"), Path("/run/c/server.key"), Path("/run/c/ca.crt"))


def test_postgresql_serves_tls_and_accepts_only_hostssl_when_required() -> None:
    assert "ssl = off" in tls_settings.postgres(None)
    text = tls_settings.postgres(FILES)
    assert "ssl = on" in text and "ssl_cert_file = '/run/c/server.crt'" in text
    rules = [line.split()[0] for line in render_hba(FILES).splitlines() if line[:1] == "h"]
    assert set(rules) == {"host"}
    required = TlsFiles(FILES.cert, FILES.key, FILES.ca, required=True)
    rules = [line.split()[0] for line in render_hba(required).splitlines() if line[:1] == "h"]
    assert rules and set(rules) == {"hostssl"}
    assert tls_settings.postgres_conninfo(FILES) == [
        ("sslmode", "verify-full"),
        ("sslrootcert", "/run/c/ca.crt"),
    ]


def test_mariadb_and_redis_settings() -> None:
    assert "ssl_cert" not in tls_settings.mariadb(None)
    required = TlsFiles(FILES.cert, FILES.key, FILES.ca, required=True)
    assert "require_secure_transport = ON" in tls_settings.mariadb(required)
    assert "require_secure_transport = OFF" in tls_settings.mariadb(FILES)
    options, values = tls_settings.mariadb_source(FILES)
    assert "MASTER_SSL_VERIFY_SERVER_CERT = 1" in options and values == ("/run/c/ca.crt",)
    assert tls_settings.mariadb_source(None) == ("", ())
    redis = tls_settings.redis(FILES, 6379).splitlines()
    assert "port 0" in redis and "tls-port 6379" in redis and "tls-replication yes" in redis
    assert "tls-port" not in tls_settings.redis(None, 6379)
