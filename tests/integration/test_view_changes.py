"""The change feed on a real PostgreSQL, where transactions commit out of the order in
which they wrote: a change committed late is still read, once, and still listed.

Only PostgreSQL is a real server here, started by this module; the production profile
runs it (the embedded profile's SQLite is covered by the unit tests).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from api.app import create_app
from cellar.db import Database
from cellar.models import ArchiveSegment, Backup, Configuration, Instance, ReplicaSet, Task
from cellar.view_changes import FED, Feed
from tests.integration.services import PostgresServer
from tests.unit.api.support import logged_in, member_of
from tests.unit.api.test_instance_views import listed, shown, varied_project
from tests.unit.cellar.test_view_changes import ROWS, changes, records_each_change
from tests.unit.fakes import make_services

pytestmark = pytest.mark.skipif(
    os.environ.get("CELLAR_TEST_PROFILE", "embedded") != "production",
    reason="the production profile's metadata database is PostgreSQL",
)


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    root = Path(tempfile.mkdtemp(prefix="cellar-feed-"))
    root.chmod(0o755)
    server = PostgresServer(root / "pg")
    try:
        server.start()
        database = Database(server.url)
        database.upgrade()
        yield database
        database.engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def configuration(key: str) -> dict[str, Any]:
    return {**ROWS["configurations"][1], "id": key}


def test_a_change_committed_after_a_later_one_is_still_read(db: Database) -> None:
    feed = Feed()
    with db.session() as session:
        feed.start(session)
    early = db.new_session()
    try:
        early.execute(insert(Configuration).values(**configuration("c-early")))  # the lower seq
        with db.session() as session:
            session.execute(insert(Configuration).values(**configuration("c-late")))
        assert changes(db, feed) == {("configuration", "c-late")}
        early.commit()
    finally:
        early.close()
    assert changes(db, feed) == {("configuration", "c-early")}
    assert changes(db, feed) == set()
    with db.session() as session:
        session.execute(delete(Configuration))
    assert changes(db, feed) == {("configuration", "c-early"), ("configuration", "c-late")}


def test_a_change_that_rolls_back_is_not_read(db: Database) -> None:
    feed = Feed()
    with db.session() as session:
        feed.start(session)
    abandoned = db.new_session()
    abandoned.execute(insert(Configuration).values(**configuration("c-gone")))
    abandoned.rollback()
    abandoned.close()
    assert changes(db, feed) == set()


@pytest.mark.parametrize(("table", "kind", "column"), FED)
def test_each_table_records_its_changes(db: Database, table: str, kind: str, column: str) -> None:
    try:
        records_each_change(db, table, kind, column)
    finally:
        with db.session() as session:
            session.execute(delete(Instance))


def test_a_list_on_postgresql_shows_a_change_committed_out_of_order(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("CELLAR_")]:
        monkeypatch.delenv(name)  # the stack's Keystone and database are not this app's
    services, *_fakes = make_services(tmp_path / "home", monkeypatch)
    services.db.engine.dispose()
    services = dataclasses.replace(services, db=db)
    ids = varied_project(services)
    client = logged_in(create_app(services).test_client(), member_of(services))
    try:
        assert [v["id"] for v in listed(client)] == ids[::-1]  # newest first
        early = db.new_session()
        try:
            early.execute(update(Instance).where(Instance.id == "inst-01").values(name="early"))
            with db.session() as session:
                session.execute(
                    update(Instance).where(Instance.id == "inst-02").values(name="late")
                )
            assert [v["name"] for v in listed(client)[-2:]] == ["late", "db1"]
            early.commit()
        finally:
            early.close()
        page = listed(client)
        assert [v["name"] for v in page[-2:]] == ["late", "early"]
        assert page == [shown(client, i) for i in ids[::-1]]
    finally:
        with db.session() as session:
            for model in (Task, Backup, ArchiveSegment, ReplicaSet, Instance, Configuration):
                session.execute(delete(model))
