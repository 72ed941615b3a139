"""Backups of every engine restore exactly what was there; damage and crashes end cleanly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskmanager.backup_crypto import MAGIC
from tests.integration.engines import read, session, write
from tests.integration.stack import Api, Stack, leftovers

PASSWORD = "Backup-pass-42"
VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}


def create(api: Api, datastore: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{datastore}-src",
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": VERSIONS[datastore]},
        "users": [{"name": "app", "password": PASSWORD}],
        **extra,
    }
    if "restorePoint" in extra:
        body.pop("volume")  # the source's size
    if datastore != "redis" and "restorePoint" not in extra:
        body["databases"] = [{"name": "shop"}]
        body["users"][0]["databases"] = [{"name": "shop"}]
    if "restorePoint" in extra:
        body.pop("users")
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    view = api.wait_instance(reply.json()["instance"]["id"], {"ACTIVE", "ERROR"})
    return view


def take_backup(api: Api, instance_id: str, within: float = 180, **extra: Any) -> dict[str, Any]:
    reply = api.call(
        "POST", "/backups", json={"backup": {"name": "b", "instance": instance_id, **extra}}
    )
    assert reply.status_code == 202, reply.text
    return wait_backup(api, reply.json()["backup"]["id"], within)


def wait_backup(api: Api, backup_id: str, within: float = 180) -> dict[str, Any]:
    end = time.monotonic() + within
    view: dict[str, Any] = {}
    while time.monotonic() < end:
        view = api.call("GET", f"/backups/{backup_id}").json()["backup"]
        if view["status"] in ("COMPLETED", "FAILED"):
            return view
        time.sleep(0.2)
    raise AssertionError(f"backup {backup_id} still {view.get('status')} after {within} s")


def wait_verified(api: Api, backup_id: str, within: float = 180) -> dict[str, Any]:
    end = time.monotonic() + within
    while time.monotonic() < end:
        checked = api.call("GET", f"/backups/{backup_id}").json()["backup"]["verification"]
        if checked:
            return dict(checked)
        time.sleep(0.3)
    raise AssertionError(f"backup {backup_id} was not verified within {within} s")


def drop(api: Api, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    for instance_id in instance_ids:
        assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"


@pytest.mark.parametrize("datastore", sorted(VERSIONS))
def test_restore_holds_exactly_the_backed_up_data(api: Api, datastore: str) -> None:
    source = create(api, datastore)
    assert source["status"] == "ACTIVE", source.get("fault")
    db = "" if datastore == "redis" else "shop"
    with session(datastore, source["connection"], "app", PASSWORD, db) as conn:
        write(datastore, conn, "first", "before the backup")
    backup = take_backup(api, source["id"])
    assert backup["status"] == "COMPLETED", backup.get("fault")
    assert backup["size_bytes"] > 0 and len(backup["checksum"]) == 64
    stored = Path(backup["locationRef"].removeprefix("file://")).read_bytes()
    assert stored.startswith(MAGIC) and b"before the backup" not in stored  # encrypted
    with session(datastore, source["connection"], "app", PASSWORD, db) as conn:
        write(datastore, conn, "second", "after the backup")

    copy = create(api, datastore, restorePoint={"backupRef": backup["id"]})
    assert copy["status"] == "ACTIVE", copy.get("fault")
    with session(datastore, copy["connection"], "app", PASSWORD, db) as conn:
        assert read(datastore, conn, "first") == "before the backup"
        assert read(datastore, conn, "second") is None

    assert (
        api.call("POST", f"/backups/{backup['id']}/action", json={"verify": {}}).status_code == 202
    )
    checked = wait_verified(api, backup["id"])
    assert checked["ok"] is True, checked
    drop(api, source["id"], copy["id"])
    assert api.call("DELETE", f"/backups/{backup['id']}").status_code == 202
    assert leftovers(api.project) == []


@pytest.mark.parametrize("datastore", ["mariadb", "postgresql"])
def test_incremental_chain_restores_to_the_last_one(api: Api, datastore: str) -> None:
    source = create(api, datastore)
    assert source["status"] == "ACTIVE", source.get("fault")
    where = source["connection"]
    backups = []
    for step, kind in enumerate(({}, {"incremental": 1}, {"incremental": 1})):
        with session(datastore, where, "app", PASSWORD, "shop") as conn:
            write(datastore, conn, f"k{step}", f"v{step}")
        backups.append(take_backup(api, source["id"], **kind))
        assert backups[-1]["status"] == "COMPLETED", backups[-1].get("fault")
    with session(datastore, where, "app", PASSWORD, "shop") as conn:
        write(datastore, conn, "k3", "v3")
    assert [b["type"] for b in backups] == ["full", "incremental", "incremental"]
    assert backups[2]["parent_id"] == backups[1]["id"]

    copy = create(api, datastore, restorePoint={"backupRef": backups[2]["id"]})
    assert copy["status"] == "ACTIVE", copy.get("fault")
    with session(datastore, copy["connection"], "app", PASSWORD, "shop") as conn:
        assert [read(datastore, conn, f"k{i}") for i in range(4)] == ["v0", "v1", "v2", None]
    drop(api, source["id"], copy["id"])


def test_a_changed_byte_is_refused_at_restore_and_at_verify(api: Api) -> None:
    source = create(api, "postgresql")
    backup = take_backup(api, source["id"])
    path = Path(backup["locationRef"].removeprefix("file://"))
    with open(path, "r+b") as handle:
        handle.seek(backup["size_bytes"] // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    copy = create(api, "postgresql", restorePoint={"backupRef": backup["id"]})
    assert copy["status"] == "ERROR"
    assert "is damaged" in copy["fault"]["message"]
    assert not [name for name in leftovers(api.project) if copy["id"] in name]
    api.call("POST", f"/backups/{backup['id']}/action", json={"verify": {}})
    checked = wait_verified(api, backup["id"])
    assert checked["ok"] is False and "is damaged" in checked["detail"]
    drop(api, source["id"], copy["id"])


def test_a_worker_killed_mid_backup_ends_it_cleanly(api: Api, stack: Stack) -> None:
    source = create(api, "postgresql", flavorRef="3", volume={"size": 2})
    where = source["connection"]
    with psycopg.connect(host=where["host"], port=where["port"], user="app", password=PASSWORD,
                         dbname="shop", connect_timeout=10) as conn:  # fmt: skip
        conn.execute(
            "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS pad"
            " FROM generate_series(1, 1000000) AS g"
        )
    reply = api.call("POST", "/backups", json={"backup": {"name": "b", "instance": source["id"]}})
    backup_id = reply.json()["backup"]["id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if api.call("GET", f"/backups/{backup_id}").json()["backup"]["status"] != "NEW":
            break
        time.sleep(0.02)
    stack.kill("worker")
    assert api.call("GET", f"/backups/{backup_id}").json()["backup"]["status"] == "BUILDING"
    time.sleep(1.0)
    stack.start("worker")
    backup = wait_backup(api, backup_id, within=240)
    assert backup["status"] in ("COMPLETED", "FAILED")
    assert backup["status"] == "COMPLETED" or backup.get("fault")
    view = api.wait_instance(source["id"], {"ACTIVE", "ERROR"}, within=60)
    assert view["status"] == "ACTIVE"
    drop(api, source["id"])
