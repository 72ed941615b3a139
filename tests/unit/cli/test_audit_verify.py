"""``cellar audit verify`` against a real SQLite metadata database and signing key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cellar import audit, settings
from cellar.cli import main as cli
from cellar.db import Database
from cellar.models import AuditEvent


@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, list[str]]]:
    """A metadata database with four chained audit rows, the first three signed; their ids."""
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "home"))
    for name in ("CELLAR_DATABASE_URL", audit.KEY_ENV, "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    config = settings.load()
    database = Database(config.database_url)
    database.upgrade()
    signer = audit.load_signer(config.home)
    ids = []
    for number in range(4):
        with database.session() as session:
            row = audit.append(
                session,
                AuditEvent(
                    project_id="p-1",
                    request_id=f"req-{number}",
                    action="instance.create",
                    target_type="instance",
                    target_id=f"i{number}",
                    details={"name": f"db{number}"},
                ),
            )
            ids.append(row.id)
            if number == 2:
                session.flush()
                audit.checkpoint(session, signer)
    yield database, ids
    database.engine.dispose()


def test_an_intact_chain_exits_0_and_says_what_it_checked(
    trail: tuple[Database, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["audit", "verify"]) == 0
    assert capsys.readouterr().out == (
        "checked 4 rows and 1 signed checkpoints: the audit chain is intact\n"
    )


def test_a_changed_row_exits_1_naming_it(
    trail: tuple[Database, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    database, ids = trail
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET target_id = 'other' WHERE seq = 2"))
    assert cli.main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "the audit chain is BROKEN" in out
    assert f"row 2 ({ids[1]}): its content was changed" in out


def test_a_deleted_row_exits_1_in_json_too(
    trail: tuple[Database, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    database, ids = trail
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    assert cli.main(["-f", "json", "audit", "verify"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["intact"] is False and shown["checkpoints"] == 1
    (finding,) = shown["findings"]
    assert (finding["seq"], finding["id"]) == (4, ids[3])


def test_without_the_signing_key_it_cannot_check(
    trail: tuple[Database, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    key = settings.load().home / audit.KEY_FILE
    key.unlink()
    assert cli.main(["audit", "verify"]) == 2
    assert "no audit signing key" in capsys.readouterr().err
    assert not key.exists()  # checking made no key of its own


def test_without_a_metadata_database_it_cannot_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("CELLAR_DATABASE_URL", raising=False)
    audit.load_signer(tmp_path)  # a key, given through the environment
    monkeypatch.setenv(audit.KEY_ENV, (tmp_path / audit.KEY_FILE).read_text())
    assert cli.main(["audit", "verify"]) == 2
    assert "no metadata database" in capsys.readouterr().err
