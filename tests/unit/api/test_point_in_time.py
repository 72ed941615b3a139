"""The continuous archive and restores to a moment, through beat's round and the API."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import ArchiveSegment
from taskmanager import archive
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def active(client: FlaskClient, world: Any, datastore: str = "postgresql") -> str:
    body = {"name": "src", "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": datastore}}  # fmt: skip
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    world[3].drain(world[0])
    return str(reply.get_json()["instance"]["id"])


def backed_up(client: FlaskClient, world: Any, instance_id: str) -> str:
    reply = client.post(f"{BASE}/backups", json={"backup": {"name": "b", "instance": instance_id}})
    world[3].drain(world[0])
    return str(reply.get_json()["backup"]["id"])


def rfc3339(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat().replace("+00:00", "Z")


def test_without_a_backup_the_archive_is_dropped(client: FlaskClient, world: Any) -> None:
    active(client, world)
    world[2].archive = {"000000010000000000000001": (b"wal-1", time.time())}
    assert archive.collect_archives(world[0]) == 0
    assert world[2].archive == {} and world[2].rotations == 0


def test_segments_are_stored_then_removed_and_set_the_window(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active(client, world)
    backed_up(client, world, instance_id)
    now = time.time()
    world[2].archive = {
        "000000010000000000000002": (b"wal-2", now + 1),
        "000000010000000000000003": (b"wal-3", now + 2),
    }
    assert archive.collect_archives(world[0]) == 2
    assert world[2].archive == {} and world[2].rotations == 1
    assert archive.collect_archives(world[0]) == 0
    with world[0].db.session() as session:
        stored = session.scalars(select(ArchiveSegment).order_by(ArchiveSegment.name)).all()
        assert [s.size_bytes for s in stored] == [5, 5]
    key = f"proj1/archive/{instance_id}/000000010000000000000003"
    assert world[0].storage.path(key).read_bytes() == b"wal-3"
    window = client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["recovery_window"]
    assert window["latest"] == rfc3339(int(now + 2)).replace("+00:00", "Z")


def test_restore_to_a_moment_replays_the_archive_up_to_it(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    backup_id = backed_up(client, world, instance_id)
    now = time.time()
    world[2].archive = {
        "000000010000000000000002": (b"wal-2", now + 10),
        "000000010000000000000003": (b"wal-3", now + 20),
        "000000010000000000000004": (b"wal-4", now + 30),
    }
    archive.collect_archives(world[0])
    target = rfc3339(now + 15)
    body = {"name": "past", "flavorRef": "1",
            "restorePoint": {"backupRef": backup_id, "restore_time": target}}  # fmt: skip
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    assert reply.status_code == 202, reply.get_json()
    world[3].drain(world[0])
    copy = client.get(f"{BASE}/instances/{reply.get_json()['instance']['id']}").get_json()
    assert copy["instance"]["status"] == "ACTIVE"
    assert [(r[0], r[1], r[2]) for r in world[2].restores] == [
        ("full", 0, "fake"),
        ("archive:000000010000000000000002", 1, "wal"),
        ("archive:000000010000000000000003", 2, "wal"),
    ]
    assert world[2].restore_times[-1].startswith(target[:19])


@pytest.mark.parametrize(
    ("offset", "words"),
    [(-3600, "before backup"), (3600, "after the latest recoverable moment")],
)
def test_a_moment_outside_the_window_is_refused(
    client: FlaskClient, world: Any, offset: float, words: str
) -> None:
    backup_id = backed_up(client, world, active(client, world))
    point = {"backupRef": backup_id, "restore_time": rfc3339(time.time() + offset)}
    body = {"name": "past", "flavorRef": "1", "restorePoint": point}
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]


@pytest.mark.parametrize(
    ("datastore", "moment", "words"),
    [
        ("postgresql", "yesterday", "not an RFC 3339 time"),
        ("postgresql", "2026-11-25T09:00:00", "time zone"),
        ("redis", "2026-11-25T09:00:00Z", "keeps no archive"),
    ],
)
def test_bad_restore_times_say_what_is_allowed(
    client: FlaskClient, world: Any, datastore: str, moment: str, words: str
) -> None:
    backup_id = backed_up(client, world, active(client, world, datastore))
    body = {"name": "past", "flavorRef": "1",
            "restorePoint": {"backupRef": backup_id, "restore_time": moment}}  # fmt: skip
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]
