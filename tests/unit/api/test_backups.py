"""Backups, restores and verification through the API and the workflows, on fakes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.errors import AgentError
from cellar.models import Instance
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def active(client: FlaskClient, world: Any, datastore: str = "postgresql") -> str:
    body = {"name": "src", "flavorRef": "1", "volume": {"size": 2},
            "datastore": {"type": datastore}}  # fmt: skip
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    world[3].drain(world[0])
    return str(reply.get_json()["instance"]["id"])


def backup(client: FlaskClient, world: Any, instance_id: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "nightly", "instance": instance_id, **extra}
    reply = client.post(f"{BASE}/backups", json={"backup": body})
    assert reply.status_code == 202, reply.get_json()
    made = reply.get_json()["backup"]
    assert made["status"] == "NEW"
    world[3].drain(world[0])
    return dict(client.get(f"{BASE}/backups/{made['id']}").get_json()["backup"])


def stored(world: Any, view: dict[str, Any]) -> Any:
    return world[0].storage.path(f"proj1/{view['id']}")


def test_a_backup_streams_into_storage_with_its_checksum(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    body = {"name": "nightly", "instance": instance_id, "description": "before the upgrade"}
    reply = client.post(f"{BASE}/backups", json={"backup": body})
    assert client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["status"] == (
        "BACKUP"
    )
    assert (
        client.post(f"{BASE}/instances/{instance_id}/action", json={"restart": {}}).status_code
        == 422
    )
    world[3].drain(world[0])
    view = client.get(f"{BASE}/backups/{reply.get_json()['backup']['id']}").get_json()["backup"]

    assert (view["status"], view["type"], view["size_bytes"]) == ("COMPLETED", "full", 12)
    assert stored(world, view).read_bytes() == b"page-1page-2"
    assert len(view["checksum"]) == 64 and view["locationRef"].startswith("file://")
    assert view["datastore"]["type"] == "postgresql" and view["description"] == "before the upgrade"
    assert client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["status"] == (
        "ACTIVE"
    )
    listed = client.get(f"{BASE}/instances/{instance_id}/backups").get_json()["backups"]
    assert [b["id"] for b in listed] == [view["id"]]


def test_a_failed_backup_says_why_and_returns_the_instance(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    world[2].backup_error = AgentError("agent Backup failed: pg_basebackup: disk is full")
    view = backup(client, world, instance_id)
    assert view["status"] == "FAILED"
    assert "disk is full" in view["fault"]
    assert not stored(world, view).exists()
    assert client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"]["status"] == (
        "ACTIVE"
    )


def test_incrementals_need_an_engine_that_has_them(client: FlaskClient, world: Any) -> None:
    cache = active(client, world, "redis")
    backup(client, world, cache)
    incremental = {"backup": {"name": "i", "instance": cache, "incremental": 1}}
    refused = client.post(f"{BASE}/backups", json=incremental)
    assert refused.status_code == 422
    assert "no incremental backups" in refused.get_json()["unprocessableEntity"]["message"]

    maria = active(client, world, "mariadb")
    full = backup(client, world, maria)
    first = backup(client, world, maria, incremental=1)
    second = backup(client, world, maria, parent_id=first["id"])
    assert (first["type"], first["parent_id"]) == ("incremental", full["id"])
    assert second["parent_id"] == first["id"]
    assert [b[2] for b in world[2].backups[-3:]] == ["", "lsn-2", "lsn-3"]


def test_restore_rebuilds_the_chain_in_order(client: FlaskClient, world: Any) -> None:
    maria = active(client, world, "mariadb")
    full = backup(client, world, maria)
    world[2].backup_chunks = [b"more"]
    inc = backup(client, world, maria, incremental=1)
    reply = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "restorePoint": {"backupRef": inc["id"]}}})  # fmt: skip
    assert reply.status_code == 202, reply.get_json()
    view = reply.get_json()["instance"]
    assert (view["datastore"]["type"], view["volume"]["size"]) == ("mariadb", 2)
    world[3].drain(world[0])
    assert client.get(f"{BASE}/instances/{view['id']}").get_json()["instance"]["status"] == (
        "ACTIVE"
    )
    assert [(r[0], r[1], r[3]) for r in world[2].restores] == [
        ("full", 0, b"page-1page-2"),
        ("incremental", 1, b"more"),
    ]
    assert world[2].restored_prepares == 1
    assert full["id"] != inc["id"]


def test_a_damaged_backup_is_refused_before_anything_is_made(
    client: FlaskClient, world: Any
) -> None:
    source = active(client, world)
    view = backup(client, world, source)
    path = stored(world, view)
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    calls_before = len(world[1].calls)
    reply = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "restorePoint": {"backupRef": view["id"]}}})  # fmt: skip
    world[3].drain(world[0])
    restored = client.get(f"{BASE}/instances/{reply.get_json()['instance']['id']}")
    instance = restored.get_json()["instance"]
    assert instance["status"] == "ERROR"
    assert "is damaged" in instance["fault"]["message"]
    assert world[1].calls[calls_before:] == []
    assert world[2].restores == []

    verify = client.post(f"{BASE}/backups/{view['id']}/action", json={"verify": {}})
    assert verify.status_code == 202
    world[3].drain(world[0])
    checked = client.get(f"{BASE}/backups/{view['id']}").get_json()["backup"]["verification"]
    assert checked["ok"] is False and "is damaged" in checked["detail"]


def test_verify_restores_into_a_scratch_instance_and_removes_it(
    client: FlaskClient, world: Any
) -> None:
    source = active(client, world)
    view = backup(client, world, source)
    reply = client.post(f"{BASE}/backups/{view['id']}/action", json={"verify": {}})
    assert reply.status_code == 202
    assert reply.get_json()["task"]["workflow"] == "verify_backup"
    world[3].drain(world[0])
    checked = client.get(f"{BASE}/backups/{view['id']}").get_json()["backup"]["verification"]
    assert (checked["ok"], checked["detail"]) == (True, "every table is fine")
    assert checked["restore_seconds"] >= 0 and checked["verified_at"]
    assert [i["id"] for i in client.get(f"{BASE}/instances").get_json()["instances"]] == [source]
    with world[0].db.session() as session:
        scratch = session.scalars(select(Instance).where(Instance.purpose == "verify")).one()
        assert scratch.deleted_at is not None
        assert client.get(f"{BASE}/instances/{scratch.id}").status_code == 404


@pytest.mark.parametrize(
    ("point", "status", "words"),
    [
        ({"backupRef": "nope"}, 404, "does not exist"),
        ({"backupRef": "{id}", "restore_time": "2026-01-01T00:00:00Z"}, 400, "restore_time"),
        ("x", 400, "backupRef"),
    ],
)
def test_bad_restore_points_are_refused(
    client: FlaskClient, world: Any, point: Any, status: int, words: str
) -> None:
    view = backup(client, world, active(client, world))
    if isinstance(point, dict):
        point = {k: v.replace("{id}", view["id"]) for k, v in point.items()}
    reply = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "restorePoint": point}})  # fmt: skip
    assert reply.status_code == status
    assert words in str(reply.get_json())


def test_a_restore_needs_a_volume_as_large_as_the_source(client: FlaskClient, world: Any) -> None:
    view = backup(client, world, active(client, world))
    reply = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "volume": {"size": 1},
        "restorePoint": {"backupRef": view["id"]}}})  # fmt: skip
    assert reply.status_code == 400
    assert "at least 2 GB" in reply.get_json()["badRequest"]["message"]
    other = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "datastore": {"type": "redis"},
        "restorePoint": {"backupRef": view["id"]}}})  # fmt: skip
    assert other.status_code == 400


def test_delete_keeps_a_parent_while_incrementals_need_it(client: FlaskClient, world: Any) -> None:
    maria = active(client, world, "mariadb")
    full = backup(client, world, maria)
    inc = backup(client, world, maria, incremental=1)
    refused = client.delete(f"{BASE}/backups/{full['id']}")
    assert (
        refused.status_code == 409
        and inc["id"] in refused.get_json()["conflictingRequest"]["message"]
    )
    assert client.delete(f"{BASE}/backups/{inc['id']}").status_code == 202
    assert client.delete(f"{BASE}/backups/{full['id']}").status_code == 202
    world[3].drain(world[0])
    assert client.get(f"{BASE}/backups").get_json()["backups"] == []
    assert not stored(world, full).exists() and not stored(world, inc).exists()
    assert client.get(f"{BASE}/backups/{full['id']}").status_code == 404


def test_deleting_the_instance_ends_its_running_backup(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    made = client.post(f"{BASE}/backups", json={"backup": {"name": "b", "instance": instance_id}})
    assert client.delete(f"{BASE}/instances/{instance_id}").status_code == 202
    world[3].drain(world[0])
    view = client.get(f"{BASE}/backups/{made.get_json()['backup']['id']}").get_json()["backup"]
    assert view["status"] in ("FAILED", "COMPLETED")
    if view["status"] == "FAILED":
        assert "deleted during the backup" in view["fault"]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"backup": {"instance": "x"}}, 400), ({"backup": {"name": "n"}}, 400),
     ({"backup": {"name": "n", "instance": "missing"}}, 404), ({"nope": {}}, 400)],
)  # fmt: skip
def test_bad_backup_requests_are_refused(client: FlaskClient, body: Any, status: int) -> None:
    assert client.post(f"{BASE}/backups", json=body).status_code == status


def test_a_postgresql_incremental_is_the_wal_since_its_parent(
    client: FlaskClient, world: Any
) -> None:
    import time

    from taskmanager import archive

    pg = active(client, world)
    full = backup(client, world, pg)
    now = time.time()
    world[2].archive = {"000000010000000000000002": (b"wal-2", now + 1)}
    archive.collect_archives(world[0])
    world[2].archive = {"000000010000000000000003": (b"wal-3", now + 2)}
    inc = backup(client, world, pg, incremental=1)
    assert (inc["status"], inc["type"], inc["parent_id"]) == (
        "COMPLETED",
        "incremental",
        full["id"],
    )
    assert len(world[2].backups) == 1  # the agent made only the full backup
    reply = client.post(f"{BASE}/instances", json={"instance": {
        "name": "copy", "flavorRef": "2", "restorePoint": {"backupRef": inc["id"]}}})  # fmt: skip
    world[3].drain(world[0])
    copy = client.get(f"{BASE}/instances/{reply.get_json()['instance']['id']}").get_json()
    assert copy["instance"]["status"] == "ACTIVE"
    assert [(r[0], r[1], r[3]) for r in world[2].restores] == [
        ("full", 0, b"page-1page-2"),
        ("archive:000000010000000000000002", 1, b"wal-2"),
        ("archive:000000010000000000000003", 2, b"wal-3"),
    ]
    assert world[2].restore_times[-1] == ""
