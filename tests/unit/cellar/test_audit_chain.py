"""The audit chain finds a row changed, deleted or inserted behind Cellar's back."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, insert, select, text, update

from cellar import audit
from cellar.db import Database
from cellar.models import AuditCheckpoint, AuditEvent, utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'cellar.db'}")
    database.upgrade()
    return database


def _fill(db: Database, count: int, signer: Ed25519PrivateKey | None = None) -> None:
    with db.session() as session:
        for n in range(count):
            audit.append(
                session,
                AuditEvent(
                    project_id="p1",
                    request_id=f"req-{n}",
                    action="instance.create",
                    target_type="instance",
                    target_id=f"i-{n}",
                    details={"n": n, "password": "hunter2"},
                ),
            )
        if signer is not None:
            audit.checkpoint(session, signer)


def _report(db: Database, signer: Ed25519PrivateKey) -> audit.Report:
    with db.session() as session:
        return audit.verify(session, signer.public_key())


def test_an_untouched_chain_is_intact_and_holds_no_secret(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 5, signer)
    _fill(db, 3)
    report = _report(db, signer)
    assert report.intact and report.rows == 8 and report.checkpoints == 1
    with db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [r.seq for r in rows] == list(range(1, 9))
        assert rows[1].prev_hash == rows[0].row_hash
        assert all(r.details["password"] == "***" for r in rows)


def test_an_edited_row_is_named(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 6, signer)
    with db.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(target_id="other"))
    report = _report(db, signer)
    assert report.finding is not None
    assert report.finding.seq == 4 and "changed" in report.finding.problem


def test_an_edit_that_also_fixes_the_hashes_is_caught_by_the_checkpoint(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 4, signer)
    with db.session() as session:  # rewrite row 4 and its hash consistently
        row = session.scalars(select(AuditEvent).where(AuditEvent.seq == 4)).one()
        row.action = "nothing.happened"
        row.row_hash = audit.digest(row.prev_hash, row)
        session.execute(text("UPDATE audit_head SET row_hash = :h"), {"h": row.row_hash})
    report = _report(db, signer)
    assert report.finding is not None and report.finding.seq == 4
    assert "checkpoint" in report.finding.problem


def test_a_deleted_row_is_named(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 6, signer)
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
    report = _report(db, signer)
    assert report.finding is not None and report.finding.seq == 4
    assert "deleted" in report.finding.problem


def test_deleting_the_newest_rows_is_caught(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 5, signer)
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    report = _report(db, signer)
    assert report.finding is not None and report.finding.seq == 4
    assert "gone" in report.finding.problem


def test_an_inserted_row_is_named(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 4, signer)
    with db.session() as session:
        session.execute(
            insert(AuditEvent).values(
                id="forged",
                project_id="p1",
                request_id="-",
                action="instance.delete",
                target_type="instance",
                target_id="i-9",
                details={},
                created=utcnow(),
            )
        )
    report = _report(db, signer)
    assert report.finding is not None and report.finding.row_id == "forged"
    assert "inserted" in report.finding.problem


def test_a_row_slipped_between_two_others_is_named(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 3, signer)
    with db.session() as session:  # make room at place 2 and put a forged row there
        session.execute(
            update(AuditEvent).where(AuditEvent.seq >= 2).values(seq=AuditEvent.seq + 10)
        )
        session.execute(
            insert(AuditEvent).values(
                id="forged",
                seq=2,
                prev_hash="0" * 64,
                row_hash="0" * 64,
                project_id="p1",
                request_id="-",
                action="x",
                target_type="instance",
                target_id="i",
                details={},
                created=utcnow(),
            )
        )
    report = _report(db, signer)
    assert report.finding is not None and report.finding.row_id == "forged"


def test_a_checkpoint_signed_by_another_key_is_forged(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    _fill(db, 3, Ed25519PrivateKey.generate())
    report = _report(db, signer)
    assert report.finding is not None and "forged" in report.finding.problem


def test_checkpoints_are_written_only_when_the_chain_grew(db: Database) -> None:
    signer = Ed25519PrivateKey.generate()
    with db.session() as session:
        assert audit.checkpoint(session, signer) is None  # nothing to sign yet
    _fill(db, 2, signer)
    with db.session() as session:
        assert audit.checkpoint(session, signer) is None
    _fill(db, 1, signer)
    with db.session() as session:
        assert len(session.scalars(select(AuditCheckpoint)).all()) == 2


def test_the_signing_key_is_private_and_kept(tmp_path: Path) -> None:
    first = audit.load_signer(tmp_path / "home")
    again = audit.load_signer(tmp_path / "home")
    assert audit.public_pem(first) == audit.public_pem(again)
    assert (tmp_path / "home" / audit.KEY_FILE).stat().st_mode & 0o777 == 0o600
