from __future__ import annotations

from pathlib import Path

from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres_config import (
    INCLUDE_LINE,
    ServerSettings,
    render_hba,
    render_settings,
    write_config,
)


def settings_of(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    return {key: value for key, value in pairs}


def test_memory_settings_follow_the_flavor() -> None:
    values = settings_of(render_settings(ServerSettings(5432, Path("/run/pg"), memory_mb=1024)))

    assert values["shared_buffers"] == "256MB"
    assert values["effective_cache_size"] == "768MB"
    assert values["max_connections"] == "100"
    assert values["password_encryption"] == "'scram-sha-256'"
    assert values["listen_addresses"] == "'*'"
    assert values["unix_socket_directories"] == "'/run/pg'"
    assert values["log_min_error_statement"] == "panic"


def test_tiny_or_unknown_memory_keeps_sane_minimums() -> None:
    tiny = settings_of(render_settings(ServerSettings(5432, Path("/run/pg"), memory_mb=32)))
    unknown = settings_of(render_settings(ServerSettings(5432, Path("/run/pg"), memory_mb=0)))

    assert tiny["shared_buffers"] == "16MB"
    assert unknown["shared_buffers"] == "128MB"


def test_quotes_in_paths_are_escaped() -> None:
    values = settings_of(render_settings(ServerSettings(1, Path("/run/it's"))))

    assert values["unix_socket_directories"] == "'/run/it''s'"


def test_hba_trusts_the_socket_and_asks_scram_over_tcp() -> None:
    rules = [line.split() for line in render_hba().splitlines() if not line.startswith("#")]

    assert ["local", "all", "all", "trust"] in rules
    assert ["host", "all", "all", "0.0.0.0/0", "scram-sha-256"] in rules
    assert ["host", "all", "all", "::/0", "scram-sha-256"] in rules
    assert not [rule for rule in rules if rule and rule[0] == "host" and rule[-1] == "trust"]


def test_write_config_includes_once_and_reports_changes(tmp_path: Path) -> None:
    (tmp_path / "postgresql.conf").write_text("port = 1\n")
    settings = ServerSettings(5433, tmp_path / "run", memory_mb=256)

    assert write_config(tmp_path, settings, OsUser()) is True
    assert write_config(tmp_path, settings, OsUser()) is False
    assert write_config(tmp_path, ServerSettings(5433, tmp_path, memory_mb=512), OsUser()) is True

    main = (tmp_path / "postgresql.conf").read_text().splitlines()
    assert main.count(INCLUDE_LINE) == 1
    assert "shared_buffers = 128MB" in (tmp_path / "cellar.conf").read_text()
    assert (tmp_path / "pg_hba.conf").read_text() == render_hba()
    assert "ssl = off" in (tmp_path / "cellar-tls.conf").read_text()  # no certificate given
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cellar-tls.conf",
        "cellar.conf",
        "pg_hba.conf",
        "postgresql.conf",
    ]
