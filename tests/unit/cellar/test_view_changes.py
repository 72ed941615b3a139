"""The database itself records each change to a row that an instance's view reads."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from cellar.db import Database
from cellar.models import (
    ArchiveSegment,
    Backup,
    Configuration,
    Instance,
    ReplicaSet,
    Task,
    ViewChange,
    utcnow,
)
from cellar.view_changes import FED, Feed, prune


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'cellar.db'}")
    database.upgrade()
    yield database
    database.engine.dispose()


ROWS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "instances": (
        Instance,
        {
            "id": "i-1", "project_id": "p", "name": "db", "flavor_id": "1",
            "datastore": "postgresql", "datastore_version": "15", "volume_size": 1,
            "status": "BUILD", "operating_status": "UNKNOWN",
        },
        "name",
    ),
    "tasks": (
        Task,
        {"id": "t-1", "project_id": "p", "instance_id": "i-1", "workflow": "provision",
         "step": "prepare", "state": "RUNNING"},
        "step",
    ),
    "backups": (
        Backup,
        {"id": "b-1", "project_id": "p", "instance_id": "i-1", "name": "b",
         "datastore": "postgresql", "datastore_version": "15", "volume_size": 1,
         "type": "full", "status": "NEW"},
        "name",
    ),
    "archive_segments": (
        ArchiveSegment,
        {"id": "a-1", "project_id": "p", "instance_id": "i-1", "name": "wal-1",
         "size_bytes": 1, "checksum": "0" * 64, "closed_at": dt.datetime(2026, 1, 1)},
        "name",
    ),
    "replica_sets": (
        ReplicaSet,
        {"id": "s-1", "project_id": "p", "primary_id": "i-1", "datastore": "postgresql",
         "secret": b"x"},
        "mode",
    ),
    "configurations": (
        Configuration,
        {"id": "c-1", "project_id": "p", "name": "tuned", "datastore": "postgresql",
         "datastore_version": "15"},
        "name",
    ),
}  # fmt: skip


def changes(db: Database, feed: Feed) -> set[tuple[str, str]]:
    with db.session() as session:
        found = feed.poll(session)
    return (
        {("instance", i) for i in found.instances}
        | {("set", s) for s in found.sets}
        | {("configuration", c) for c in found.configurations}
    )


@pytest.mark.parametrize(("table", "kind", "column"), FED)
def test_each_insert_update_and_delete_is_recorded(
    db: Database, table: str, kind: str, column: str
) -> None:
    try:
        records_each_change(db, table, kind, column)
    finally:
        with db.session() as session:
            session.execute(delete(Instance))


def records_each_change(db: Database, table: str, kind: str, column: str) -> None:
    """A row of ``table`` made, changed and deleted: the feed names it each time, once."""
    model, values, changed = ROWS[table]
    key = values[column]
    feed = Feed()
    with db.session() as session:
        if table != "instances":
            session.execute(insert(Instance).values(**ROWS["instances"][1]))
    with db.session() as session:
        feed.start(session)
    with db.session() as session:
        session.execute(insert(model).values(**values))
    assert changes(db, feed) == {(kind, key)}
    assert changes(db, feed) == set()  # seen once
    with db.session() as session:
        session.execute(update(model).values({changed: "other"}))
    assert changes(db, feed) == {(kind, key)}
    with db.session() as session:
        session.execute(delete(model))
    assert changes(db, feed) == {(kind, key)}


def test_a_change_that_rolls_back_is_not_recorded(db: Database) -> None:
    feed = Feed()
    with db.session() as session:
        feed.start(session)
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(insert(Configuration).values(**ROWS["configurations"][1]))
        raise RuntimeError("abandoned")
    assert changes(db, feed) == set()


def test_a_row_moved_to_another_instance_names_both(db: Database) -> None:
    with db.session() as session:
        session.execute(insert(Instance).values(**ROWS["instances"][1]))
        session.execute(insert(Task).values(**ROWS["tasks"][1]))
    feed = Feed()
    with db.session() as session:
        feed.start(session)
        session.execute(update(Task).values(instance_id="i-2"))
    assert changes(db, feed) == {("instance", "i-1"), ("instance", "i-2")}


def test_changes_made_outside_the_orm_are_recorded(db: Database, tmp_path: Path) -> None:
    feed = Feed()
    with db.session() as session:
        session.execute(insert(Instance).values(**ROWS["instances"][1]))
        feed.start(session)
    plain = sqlite3.connect(tmp_path / "cellar.db")
    plain.execute("UPDATE instances SET status = 'ACTIVE' WHERE id = 'i-1'")
    plain.commit()
    plain.close()
    assert changes(db, feed) == {("instance", "i-1")}


def test_an_unstarted_feed_cannot_be_read(db: Database) -> None:
    with pytest.raises(RuntimeError, match="not started"), db.session() as session:
        Feed().poll(session)


def test_prune_removes_only_old_rows(db: Database) -> None:
    with db.session() as session:
        session.execute(insert(Configuration).values(**ROWS["configurations"][1]))
        session.execute(
            insert(ViewChange).values(
                kind="set", key="s-old", created=utcnow() - dt.timedelta(hours=1)
            )
        )
    with db.session() as session:
        assert prune(session) == 1
    with db.session() as session:
        assert session.scalars(select(ViewChange.key)).all() == ["c-1"]
