"""Restore to a moment: every transaction committed before it is there, none after."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import pytest

from tests.integration.engines import read, session, write
from tests.integration.stack import Api
from tests.integration.test_backups import PASSWORD, create, drop, take_backup


def wait_window(api: Api, instance_id: str, moment: dt.datetime, within: float = 90) -> None:
    """Wait until the instance's archive reaches past ``moment``."""
    end = time.monotonic() + within
    window: dict[str, Any] = {}
    while time.monotonic() < end:
        window = (
            api.call("GET", f"/instances/{instance_id}").json()["instance"].get("recovery_window")
            or {}
        )
        latest = window.get("latest")
        if latest and dt.datetime.fromisoformat(latest.replace("Z", "+00:00")) > moment:
            return
        time.sleep(1)
    raise AssertionError(f"the archive of {instance_id} did not pass {moment}: {window}")


@pytest.mark.parametrize("datastore", ["mariadb", "postgresql"])
def test_restore_to_a_moment_between_two_commits(api: Api, datastore: str) -> None:
    source = create(api, datastore)
    assert source["status"] == "ACTIVE", source.get("fault")
    where = source["connection"]
    with session(datastore, where, "app", PASSWORD, "shop") as conn:
        write(datastore, conn, "a", "in the backup")
    backup = take_backup(api, source["id"])
    assert backup["status"] == "COMPLETED", backup.get("fault")
    with session(datastore, where, "app", PASSWORD, "shop") as conn:
        write(datastore, conn, "b", "before the moment")
    # binary logs keep whole seconds: the moment is a whole second after b, c a second later
    moment = math.ceil(time.time()) + 1
    time.sleep(max(0.0, moment + 1.2 - time.time()))
    with session(datastore, where, "app", PASSWORD, "shop") as conn:
        write(datastore, conn, "c", "after the moment")
    at = dt.datetime.fromtimestamp(moment, dt.UTC)
    wait_window(api, source["id"], at)

    point = {"backupRef": backup["id"], "restore_time": at.isoformat().replace("+00:00", "Z")}
    copy = create(api, datastore, restorePoint=point)
    assert copy["status"] == "ACTIVE", copy.get("fault")
    with session(datastore, copy["connection"], "app", PASSWORD, "shop") as conn:
        assert read(datastore, conn, "a") == "in the backup"
        assert read(datastore, conn, "b") == "before the moment"
        assert read(datastore, conn, "c") is None
        write(datastore, conn, "d", "the copy takes writes")
    too_late = (at + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    late_point = {"backupRef": backup["id"], "restore_time": too_late}
    refused = api.call("POST", "/instances", json={"instance": {
        "name": "late", "flavorRef": "2", "restorePoint": late_point}})  # fmt: skip
    assert refused.status_code == 400
    assert "latest recoverable moment" in refused.json()["badRequest"]["message"]
    drop(api, source["id"], copy["id"])
