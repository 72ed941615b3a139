"""Replica sets of every engine: replicas that read, switchover and automatic failover
through the set's rw endpoint, with every acknowledged write accounted for."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker
import pytest

from benchmarks.writer import CounterWriter, Login, connect, prepare_counter, stored, write_one
from tests.integration import engines
from tests.integration.stack import Api

PASSWORD = "Replica-pass-42"
VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}
READ_ONLY_WORDS = ("read-only", "read only", "readonly", "--read-only")


def create_primary(api: Api, datastore: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{datastore}-primary",
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": VERSIONS[datastore]},
        "users": [{"name": "app", "password": PASSWORD}],
    }
    if datastore != "redis":
        body["databases"] = [{"name": "shop"}]
        body["users"][0]["databases"] = [{"name": "shop"}]
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    view = api.wait_instance(reply.json()["instance"]["id"], {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    return view


def create_replicas(
    api: Api, primary: dict[str, Any], count: int = 1, **extra: Any
) -> list[dict[str, Any]]:
    body = {"name": "copy", "replica_of": primary["id"], "replica_count": count, **extra}
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    ids = [r["id"] for r in api.call("GET", f"/instances/{primary['id']}").json()["instance"]
           ["replicas"]]  # fmt: skip
    views = [api.wait_instance(i, {"ACTIVE", "ERROR"}, within=240) for i in ids]
    for view in views:
        assert view["status"] == "ACTIVE", view.get("fault")
    head = api.call("GET", f"/instances/{primary['id']}").json()["instance"]
    assert head["endpoints"]["rw"]["port"] and head["endpoints"]["ro"]["port"]  # ACTIVE: ready
    return views


def login(datastore: str, where: dict[str, Any]) -> Login:
    database = "" if datastore == "redis" else "shop"
    ca_file = str(engines.CA_FILE or "")
    return Login(datastore, where["host"], where["port"], "app", PASSWORD, database, ca_file)


def stored_at(datastore: str, where: dict[str, Any]) -> set[int]:
    with contextlib.closing(connect(login(datastore, where))) as conn:
        return stored(conn)


def counter_table(datastore: str, where: dict[str, Any]) -> None:
    with contextlib.closing(connect(login(datastore, where))) as conn:
        prepare_counter(conn)


def show(api: Api, instance_id: str) -> dict[str, Any]:
    return dict(api.call("GET", f"/instances/{instance_id}").json()["instance"])


def wait_for(check: Any, within: float, what: Any) -> float:
    """Seconds until ``check()`` held; ``what`` (a text or a callable giving one) names it."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what() if callable(what) else what} not seen within {within} s")


def finished_event(api: Api, instance_id: str, within: float = 60) -> dict[str, Any]:
    """The newest replication event of the instance's set, once it has ended."""
    end = time.monotonic() + within
    path = f"/instances/{instance_id}/replication_events"
    while time.monotonic() < end:
        events = api.call("GET", path).json()["replication_events"]
        if events and events[0]["state"] != "RUNNING":
            return dict(events[0])
        time.sleep(0.1)
    raise AssertionError(f"no finished replication event for {instance_id} within {within} s")


def drop_set(api: Api, primary_id: str) -> None:
    for replica in show(api, primary_id).get("replicas", []):
        assert api.call("DELETE", f"/instances/{replica['id']}").status_code == 202
        assert api.wait_instance(replica["id"], {"GONE", "ERROR"})["status"] == "GONE"
    assert api.call("DELETE", f"/instances/{primary_id}").status_code == 202
    assert api.wait_instance(primary_id, {"GONE", "ERROR"})["status"] == "GONE"


def refused_as_read_only(datastore: str, where: dict[str, Any]) -> str:
    conn = connect(login(datastore, where))
    try:
        write_one(conn, -1)
    except Exception as exc:  # noqa: BLE001  (each client raises its own error type)
        return str(exc).lower()
    finally:
        conn.close()
    raise AssertionError("a write on the replica was accepted")


@pytest.mark.parametrize("datastore", sorted(VERSIONS))
def test_a_replica_reads_the_primarys_writes_and_refuses_its_own(api: Api, datastore: str) -> None:
    primary = create_primary(api, datastore)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(
            contextlib.closing(connect(login(datastore, primary["connection"])))
        )
        prepare_counter(conn)
        write_one(conn, 1)
        (replica,) = create_replicas(api, primary)
        assert replica["replica_of"]["id"] == primary["id"]
        assert replica["replication"]["role"] == "replica"
        assert [r["id"] for r in show(api, primary["id"])["replicas"]] == [replica["id"]]
        reader = stack.enter_context(
            contextlib.closing(connect(login(datastore, replica["connection"])))
        )
        assert stored(reader) == {1}  # the seed copy holds what was there
        for number in range(2, 12):
            write_one(conn, number)
        wait_for(lambda: stored(reader) == set(range(1, 12)), 10, "the primary's rows")
    text = refused_as_read_only(datastore, replica["connection"])
    assert any(word in text for word in READ_ONLY_WORDS), text
    endpoints = show(api, primary["id"])["endpoints"]
    assert stored_at(datastore, endpoints["rw"]) == set(range(1, 12))
    assert stored_at(datastore, endpoints["ro"]) == set(range(1, 12))
    wait_for(lambda: "lag_seconds" in show(api, replica["id"])["replication"], 20, "the lag")
    lag = show(api, replica["id"])["replication"]
    assert lag["source_connected"] is True and lag["lag_seconds"] >= 0, lag
    detach = {"instance": {"replica_of": None}}
    assert api.call("PUT", f"/instances/{replica['id']}", json=detach).status_code == 202
    alone = api.wait_instance(replica["id"], {"ACTIVE", "ERROR"}, within=60)
    assert alone["status"] == "ACTIVE" and "replica_of" not in alone, alone
    with contextlib.closing(connect(login(datastore, alone["connection"]))) as conn:
        write_one(conn, 100)  # writable on its own
    assert 100 not in stored_at(datastore, primary["connection"])
    lone = show(api, primary["id"])
    assert "replicas" not in lone and "replica_of" not in lone  # gone with the last replica
    drop_set(api, primary["id"])
    assert api.call("DELETE", f"/instances/{replica['id']}").status_code == 202
    assert api.wait_instance(replica["id"], {"GONE", "ERROR"})["status"] == "GONE"


@pytest.mark.parametrize("datastore", sorted(VERSIONS))
def test_switchover_keeps_every_acknowledged_write(api: Api, datastore: str) -> None:
    primary = create_primary(api, datastore)
    counter_table(datastore, primary["connection"])
    replicas = create_replicas(api, primary, count=2)
    rw = show(api, primary["id"])["endpoints"]["rw"]
    writer = CounterWriter(login(datastore, rw)).start()
    wait_for(lambda: len(writer.acked) > 20, 20, "writes through the rw endpoint")
    switched = time.monotonic()
    reply = api.call("POST", f"/instances/{replicas[0]['id']}/action",
                     json={"promote_to_replica_source": {}})  # fmt: skip
    assert reply.status_code == 202, reply.text
    new = api.wait_instance(replicas[0]["id"], {"ACTIVE", "ERROR"}, within=120)
    assert new["status"] == "ACTIVE", new.get("fault")
    done = time.monotonic()
    wait_for(lambda: writer.first_ack_after(done) is not None, 30, "writes after the switchover")
    writer.stop()
    assert new["replication"]["role"] == "primary"
    missing = writer.acked_numbers() - stored_at(datastore, new["connection"])
    assert not missing, f"acknowledged writes lost: {sorted(missing)[:10]}"
    old = api.wait_instance(primary["id"], {"ACTIVE", "ERROR"}, within=60)
    assert old["replica_of"]["id"] == new["id"]
    acked = writer.acked_numbers()
    wait_for(lambda: acked <= stored_at(datastore, old["connection"]), 15, "the old primary")
    with contextlib.closing(connect(login(datastore, new["connection"]))) as conn:
        write_one(conn, 10**9)
    wait_for(lambda: 10**9 in stored_at(datastore, old["connection"]), 15, "a later write")
    text = refused_as_read_only(datastore, old["connection"])
    assert any(word in text for word in READ_ONLY_WORDS), text
    event = finished_event(api, new["id"])
    assert (event["kind"], event["state"]) == ("switchover", "COMPLETED")
    print(f"{datastore} switchover: writes refused for {writer.longest_gap(switched):.2f} s")
    drop_set(api, new["id"])


@pytest.mark.parametrize("datastore", sorted(VERSIONS))
def test_killing_the_primary_fails_over_by_itself(api: Api, datastore: str) -> None:
    primary = create_primary(api, datastore)
    counter_table(datastore, primary["connection"])
    extra = {"replication": {"mode": "sync"}} if datastore == "postgresql" else {}
    replicas = create_replicas(api, primary, count=2, **extra)
    rw = show(api, primary["id"])["endpoints"]["rw"]
    writer = CounterWriter(login(datastore, rw)).start()
    wait_for(lambda: len(writer.acked) > 20, 20, "writes through the rw endpoint")
    docker.from_env().containers.get(f"cellar-{primary['id']}").kill()
    killed = time.monotonic()
    wait_for(
        lambda: writer.back_after(killed) is not None,
        60,
        lambda: f"a write after the kill (last errors {writer.errors[-3:]})",
    )
    took = (writer.back_after(killed) or killed) - killed
    writer.stop()
    event = finished_event(api, primary["id"])
    assert (event["kind"], event["old_primary"]) == ("automatic_failover", primary["id"])
    assert event["state"] == "COMPLETED", event
    new_id = event["new_primary"]
    assert new_id in {r["id"] for r in replicas}
    new = api.wait_instance(new_id, {"ACTIVE", "ERROR"}, within=60)
    assert new["replication"]["role"] == "primary"
    old = show(api, primary["id"])
    assert old["status"] == "SHUTDOWN" and "failover" in old["fault"]["message"]
    other = next(r for r in replicas if r["id"] != new_id)
    assert show(api, other["id"])["replica_of"]["id"] == new_id
    if datastore == "postgresql":  # synchronous: nothing acknowledged may be missing
        missing = writer.acked_numbers() - stored_at(datastore, new["connection"])
        assert not missing, f"acknowledged writes lost in sync mode: {sorted(missing)[:10]}"
    print(f"{datastore} failover: first write {took:.2f} s after the kill")
    drop_set(api, new_id)
    assert api.call("DELETE", f"/instances/{primary['id']}").status_code == 202
    assert api.wait_instance(primary["id"], {"GONE", "ERROR"})["status"] == "GONE"
