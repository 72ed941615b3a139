"""Size-enforced volumes on a real PostgreSQL instance: the size holds, grows, fills up safely."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import docker
import docker.errors
import psycopg
import pytest

from cellar import settings as settings_module
from taskmanager.drivers.volumes import GIB, LoopVolumes
from tests.integration.stack import Api, leftovers

PASSWORD = "Vol-secret-pw1"
DATA_PATH = "/var/lib/cellar/data"

pytestmark = pytest.mark.skipif(
    settings_module.load().volume_backend != "loop",
    reason="volume sizes are enforced only by the loop backend (root, losetup, mkfs.ext4)",
)


def create(api: Api, name: str, size: int) -> tuple[str, dict[str, Any]]:
    body = {
        "name": name,
        "flavorRef": "2",
        "volume": {"size": size},
        "datastore": {"type": "postgresql", "version": "15"},
        "databases": [{"name": "shop"}],
        "users": [{"name": "vol", "password": PASSWORD, "databases": [{"name": "shop"}]}],
    }
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    instance_id = reply.json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    where = view["connection"]
    login = {"host": where["host"], "port": where["port"], "user": "vol", "password": PASSWORD}
    return instance_id, {**login, "dbname": "shop", "connect_timeout": 10}


def df(instance_id: str) -> tuple[int, int]:
    """Size and free bytes of the data directory's file system, seen inside the container."""
    out = subprocess.run(
        ["docker", "exec", f"cellar-{instance_id}", "df", "-B1", "--output=size,avail", DATA_PATH],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[-2]), int(out[-1])


def wait_view(api: Api, instance_id: str, check: Any, within: float = 60.0) -> dict[str, Any]:
    end = time.monotonic() + within
    view: dict[str, Any] = {}
    while time.monotonic() < end:
        view = api.call("GET", f"/instances/{instance_id}").json()["instance"]
        if check(view):
            return view
        time.sleep(0.5)
    raise AssertionError(f"instance {instance_id} never matched: {view}")


def delete(api: Api, instance_id: str) -> None:
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
    assert leftovers(api.project) == []


def resize(api: Api, instance_id: str, size: object) -> Any:
    return api.call(
        "POST", f"/instances/{instance_id}/action", json={"resize": {"volume": {"size": size}}}
    )


def test_volume_size_is_enforced_grows_and_leaves_nothing(api: Api) -> None:
    instance_id, login = create(api, "sized", 1)
    volumes = LoopVolumes(settings_module.load().volumes_dir)
    assert volumes.device(instance_id) is not None
    assert volumes.image(instance_id).stat().st_size == GIB
    with psycopg.connect(**login) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    size, free = df(instance_id)
    print(f"1 GiB volume: df size {size} free {free}")
    assert 0.9 * GIB < size <= GIB and free < size

    view = wait_view(api, instance_id, lambda v: v["volume"].get("used", 0) > 0)
    assert view["volume"]["size"] == 1 and 0 < view["volume"]["used"] < 1

    shrink = resize(api, instance_id, 1)
    assert shrink.status_code == 400
    message = shrink.json()["badRequest"]["message"]
    assert "shrinking" in message and "current 1 GB" in message
    too_big = resize(api, instance_id, 5000)
    assert too_big.status_code == 400 and "1 to 1024" in too_big.json()["badRequest"]["message"]

    assert resize(api, instance_id, 2).status_code == 202
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert (view["status"], view["volume"]["size"]) == ("ACTIVE", 2), view.get("fault")
    assert view["volume"]["used"] > 0
    tasks = [t for t in api.instance_tasks(instance_id) if t["workflow"] == "resize_volume"]
    assert [t["state"] for t in tasks] == ["COMPLETED"]
    grown, grown_free = df(instance_id)
    print(f"grown to 2 GiB: df size {grown} free {grown_free}")
    assert 1.9 * GIB < grown <= 2 * GIB and grown_free > free + 0.9 * GIB
    assert volumes.image(instance_id).stat().st_size == 2 * GIB
    with psycopg.connect(**login) as conn:
        assert conn.execute("SELECT count(*), max(id) FROM kept").fetchone() == (5000, 5000)
        conn.execute("INSERT INTO kept VALUES (5001, 'after the resize')")

    delete(api, instance_id)
    assert not volumes.image(instance_id).exists()
    assert volumes.device(instance_id) is None


def connect_again(login: dict[str, Any], within: float = 120.0) -> psycopg.Connection[Any]:
    end = time.monotonic() + within
    while True:
        try:
            return psycopg.connect(**login)
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(1)


def test_a_full_volume_fails_the_write_and_keeps_the_data(api: Api) -> None:
    instance_id, login = create(api, "filling", 1)
    with psycopg.connect(**login) as conn:
        conn.execute("CREATE TABLE precious (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO precious SELECT g, md5(g::text) FROM generate_series(1, 100) g")
        conn.execute("CREATE TABLE big (v text)")

    # ~1.3 GB of rows short enough to stay uncompressed, in one transaction
    with pytest.raises(psycopg.Error) as failed, psycopg.connect(**login) as conn:
        conn.execute(
            "INSERT INTO big SELECT repeat(md5(g::text), 60) FROM generate_series(1, 650000) g"
        )
    print(f"the big insert failed with {type(failed.value).__name__}: {failed.value}")
    if isinstance(failed.value, psycopg.errors.DiskFull):
        assert "No space left on device" in str(failed.value)
    else:  # the engine restarted its backends (a PANIC) and must come back by itself
        assert isinstance(failed.value, psycopg.OperationalError), failed.value

    view = api.call("GET", f"/instances/{instance_id}").json()["instance"]
    assert view["status"] == "ACTIVE"
    with connect_again(login) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone() == (100,)
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (0,)
        conn.execute("DROP TABLE big")
        conn.execute("INSERT INTO precious VALUES (101, 'written after the disk was full')")
    with psycopg.connect(**login) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone() == (101,)
    view = wait_view(api, instance_id, lambda v: v["operating_status"] == "HEALTHY")
    assert view["status"] == "ACTIVE"
    delete(api, instance_id)


def test_a_volume_lost_with_the_host_is_mounted_again_before_the_engine_starts(api: Api) -> None:
    instance_id, login = create(api, "rebooted", 1)
    with psycopg.connect(**login) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('before the restart')")
    volumes = LoopVolumes(settings_module.load().volumes_dir)
    container = docker.from_env().containers.get(f"cellar-{instance_id}")
    container.stop(timeout=30)
    # what a host restart leaves: the image file, no mount, an empty mount point
    subprocess.run(["umount", str(volumes.mount_point(instance_id))], check=True)
    assert volumes.device(instance_id) is None
    with pytest.raises(docker.errors.APIError, match="bind source path does not exist"):
        container.start()  # Docker refuses: nothing is written into the empty mount point
    assert list(volumes.mount_point(instance_id).iterdir()) == []

    # the monitor mounts the volume again and starts the container
    view = wait_view(api, instance_id, lambda v: volumes.device(instance_id) is not None)
    view = wait_view(api, instance_id, lambda v: v["operating_status"] == "HEALTHY")
    assert view["status"] == "ACTIVE"
    with connect_again(login) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("before the restart",)]
    delete(api, instance_id)
