from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.errors import AgentError
from cellar.models import AuditEvent, Instance, ReplicaSet, Task
from taskmanager import replication_watch
from taskmanager.drivers.docker import container_name
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
BODY = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 2},
    "datastore": {"type": "postgresql", "version": "15"},
}


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def create(client: FlaskClient, world: Any, body: dict[str, Any]) -> Any:
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    world[3].drain(world[0])
    return reply


def primary_with_replicas(client: FlaskClient, world: Any, count: int) -> tuple[str, list[str]]:
    primary = create(client, world, BODY).get_json()["instance"]["id"]
    reply = create(client, world, {"name": "copy", "replica_of": primary, "replica_count": count})
    assert reply.status_code == 202, reply.get_json()
    view = show(client, primary)
    return primary, [r["id"] for r in view["replicas"]]


def show(client: FlaskClient, instance_id: str) -> dict[str, Any]:
    return dict(client.get(f"{BASE}/instances/{instance_id}").get_json()["instance"])


def action(client: FlaskClient, instance_id: str, name: str) -> Any:
    return client.post(f"{BASE}/instances/{instance_id}/action", json={name: {}})


def error(reply: Any, status: int) -> str:
    assert reply.status_code == status, reply.get_json()
    return str(next(iter(reply.get_json().values()))["message"])


def test_replicas_are_seeded_from_the_primary_and_shown_both_ways(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, _queue = world
    primary, replicas = primary_with_replicas(client, world, 2)
    assert len(replicas) == 2
    for replica_id in replicas:
        view = show(client, replica_id)
        assert view["status"] == "ACTIVE"
        assert view["replica_of"]["id"] == primary
        assert view["replication"]["role"] == "replica"
        assert view["name"].startswith("copy-")
    sources = [c[1] for c in agent.replication_calls if c[0] == "prepare_replica"]
    assert [s.host for s in sources] == [container_name(primary)] * 2
    assert all(s.user == "cellar_repl" and s.password for s in sources)
    assert [r[:3] for r in agent.restores] == [("full", 0, "tar")] * 2  # a fresh backup each
    enabled = [c[1] for c in agent.replication_calls if c[0] == "enable"]
    assert sorted(enabled[-1][0]) == sorted("cellar_" + r.replace("-", "") for r in replicas)
    view = show(client, primary)
    assert view["replication"] == {"role": "primary", "mode": "async", "auto_failover": True}
    assert view["endpoints"]["rw"]["port"] and view["endpoints"]["ro"]["port"]
    with services.db.session() as session:
        replica_set = session.scalars(select(ReplicaSet)).one()
    rw, ro = services.endpoints.sets[replica_set.id]
    assert rw.host == container_name(primary)
    assert sorted(b.host for b in ro) == sorted(container_name(r) for r in replicas)


def test_redis_replicas_copy_themselves_without_a_restore(client: FlaskClient, world: Any) -> None:
    agent = world[2]
    body = {**BODY, "datastore": {"type": "redis", "version": "7.0"}}
    primary = create(client, world, body).get_json()["instance"]["id"]
    reply = create(client, world, {"name": "copy", "replica_of": primary})
    assert reply.status_code == 202
    assert show(client, reply.get_json()["instance"]["id"])["status"] == "ACTIVE"
    assert agent.restores == []
    assert agent.restored_prepares == 0


@pytest.mark.parametrize(
    ("extra", "status", "words"),
    [
        ({"replica_count": 6}, 400, ["replica_count", "1 to 5"]),
        ({"replica_count": 0}, 400, ["replica_count"]),
        ({"users": [{"name": "u", "password": "pw123456"}]}, 400, ["users", "replica_of"]),
        ({"replication": {"mode": "eventual"}}, 400, ["async", "sync"]),
        ({"replication": {"auto_failover": "yes"}}, 400, ["auto_failover"]),
        ({"datastore": {"type": "redis"}}, 400, ["postgresql"]),
        ({"volume": {"size": 1}}, 400, ["volume.size", "2 to"]),
    ],
)
def test_bad_replica_requests_say_what_is_wrong(
    client: FlaskClient, world: Any, extra: dict[str, Any], status: int, words: list[str]
) -> None:
    primary = create(client, world, BODY).get_json()["instance"]["id"]
    reply = create(client, world, {"name": "copy", "replica_of": primary, **extra})
    text = error(reply, status)
    for word in words:
        assert word in text


def test_replica_of_an_unknown_instance_or_of_a_replica_is_refused(
    client: FlaskClient, world: Any
) -> None:
    reply = create(client, world, {"name": "copy", "replica_of": "nope"})
    assert "nope" in error(reply, 404)
    _primary, replicas = primary_with_replicas(client, world, 1)
    reply = create(client, world, {"name": "copy", "replica_of": replicas[0]})
    assert "itself a replica" in error(reply, 400)
    reply = create(client, world, {**BODY, "replica_count": 2})
    assert "replica_of" in error(reply, 400)


def test_sync_mode_is_offered_for_postgresql_only(client: FlaskClient, world: Any) -> None:
    body = {**BODY, "datastore": {"type": "mariadb", "version": "10.11"}}
    primary = create(client, world, body).get_json()["instance"]["id"]
    reply = create(
        client, world, {"name": "copy", "replica_of": primary, "replication": {"mode": "sync"}}
    )
    assert "synchronous" in error(reply, 400)


def test_a_set_holds_at_most_five_replicas(client: FlaskClient, world: Any) -> None:
    primary, _replicas = primary_with_replicas(client, world, 4)
    reply = create(client, world, {"name": "more", "replica_of": primary, "replica_count": 2})
    assert "at most 5" in error(reply, 409)


def test_switchover_promotes_at_the_old_primarys_final_position(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, queue = world
    primary, replicas = primary_with_replicas(client, world, 2)
    assert "not a replica" in error(action(client, primary, "promote_to_replica_source"), 400)
    agent.replication_calls.clear()
    assert action(client, replicas[0], "promote_to_replica_source").status_code == 202
    assert show(client, replicas[0])["status"] == "PROMOTE"
    queue.drain(services)
    kinds = [c[0] for c in agent.replication_calls]
    assert kinds[:2] == ["stop_writes", "promote"]
    assert agent.replication_calls[1] == ("promote", 42)  # waits for the old primary's end
    followers = [c[1].host for c in agent.replication_calls if c[0] == "follow"]
    assert sorted(followers) == [container_name(replicas[0])] * 2
    new = show(client, replicas[0])
    assert new["status"] == "ACTIVE" and new["replication"]["role"] == "primary"
    assert sorted(r["id"] for r in new["replicas"]) == sorted([primary, replicas[1]])
    assert show(client, primary)["replica_of"]["id"] == replicas[0]
    events = client.get(f"{BASE}/instances/{primary}/replication_events").get_json()
    event = events["replication_events"][0]
    assert (event["kind"], event["state"]) == ("switchover", "COMPLETED")
    assert (event["old_primary"], event["new_primary"]) == (primary, replicas[0])


def test_eject_needs_a_dead_primary_then_fences_it_and_promotes_a_replica(
    client: FlaskClient, world: Any
) -> None:
    services, compute, _agent, queue = world
    primary, replicas = primary_with_replicas(client, world, 2)
    assert "healthy" in error(action(client, primary, "eject_replica_source"), 409)
    with services.db.session() as session:
        row = session.get(Instance, primary)
        assert row is not None
        row.operating_status = "SHUTDOWN"
    assert "switchover needs" in error(
        action(client, replicas[0], "promote_to_replica_source"), 409
    )
    assert action(client, primary, "eject_replica_source").status_code == 202
    queue.drain(services)
    assert primary in compute.stopped
    old = show(client, primary)
    assert old["status"] == "SHUTDOWN" and "failover" in old["fault"]["message"]
    assert "replica_of" not in old and "replication" not in old
    new = show(client, replicas[0])
    assert new["replication"]["role"] == "primary"
    assert [r["id"] for r in new["replicas"]] == [replicas[1]]
    events = client.get(f"{BASE}/instances/{replicas[0]}/replication_events").get_json()
    assert events["replication_events"][0]["kind"] == "failover"


def test_a_primary_with_replicas_cannot_be_deleted_but_a_detached_one_can(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, queue = world
    primary, replicas = primary_with_replicas(client, world, 1)
    assert "replicas" in error(client.delete(f"{BASE}/instances/{primary}"), 409)
    reply = client.put(f"{BASE}/instances/{primary}", json={"instance": {"replica_of": None}})
    assert "not a replica" in error(reply, 400)
    reply = client.put(f"{BASE}/instances/{replicas[0]}", json={"instance": {"replica_of": "x"}})
    assert "null" in error(reply, 400)
    reply = client.put(f"{BASE}/instances/{replicas[0]}", json={"instance": {"replica_of": None}})
    assert reply.status_code == 202
    queue.drain(services)
    assert ("promote", 0) in agent.replication_calls
    detached = show(client, replicas[0])
    assert detached["status"] == "ACTIVE" and "replica_of" not in detached
    alone = show(client, primary)
    assert "replicas" not in alone and "replica_of" not in alone  # gone with the last replica
    assert client.delete(f"{BASE}/instances/{primary}").status_code == 202
    queue.drain(services)
    with services.db.session() as session:
        assert session.scalars(select(ReplicaSet)).one().deleted_at is not None
    assert services.endpoints.sets == {}


def test_sync_mode_is_set_on_the_primary_and_applied_by_a_task(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, queue = world
    primary, replicas = primary_with_replicas(client, world, 1)
    body = {"instance": {"replication": {"mode": "sync", "auto_failover": False}}}
    reply = client.put(f"{BASE}/instances/{replicas[0]}", json=body)
    assert "primary" in error(reply, 400)
    assert client.put(f"{BASE}/instances/{primary}", json=body).status_code == 202
    queue.drain(services)
    assert agent.replication_calls[-1] == (
        "enable",
        (["cellar_" + replicas[0].replace("-", "")], True),
    )
    view = show(client, primary)["replication"]
    assert (view["mode"], view["auto_failover"]) == ("sync", False)


def test_the_watcher_fails_over_a_primary_that_stays_silent(
    client: FlaskClient, world: Any
) -> None:
    services, compute, agent, queue = world
    services.settings = dataclasses.replace(services.settings, failover_grace=0.0)
    primary, replicas = primary_with_replicas(client, world, 1)
    assert replication_watch.watch_primaries(services) == []  # the agent answers
    agent.serving = False
    agent.replication_state = dataclasses.replace(agent.replication_state, source_connected=True)
    assert replication_watch.watch_primaries(services) == []  # first sighting: the clock starts
    assert replication_watch.watch_primaries(services) == []  # a replica still sees it
    agent.replication_state = dataclasses.replace(agent.replication_state, source_connected=False)
    started = replication_watch.watch_primaries(services)
    assert len(started) == 1
    assert replication_watch.watch_primaries(services) == []  # one failover at a time
    agent.serving = True
    queue.drain(services)
    assert primary in compute.stopped
    assert show(client, replicas[0])["replication"]["role"] == "primary"
    with services.db.session() as session:
        task = session.get(Task, started[0])
        assert task is not None and task.state == "COMPLETED"
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "instance.automatic_failover")
        ).one()
        assert audit.target_id == primary
    event = client.get(f"{BASE}/instances/{primary}/replication_events").get_json()
    first = event["replication_events"][0]
    assert first["kind"] == "automatic_failover" and first["detected"] is not None


def test_users_and_databases_change_on_the_primary_only(client: FlaskClient, world: Any) -> None:
    _primary, replicas = primary_with_replicas(client, world, 1)
    path = f"{BASE}/instances/{replicas[0]}"
    user = {"users": [{"name": "late", "password": "pw-123456"}]}
    assert "primary" in error(client.post(f"{path}/users", json=user), 409)
    reply = client.post(f"{path}/databases", json={"databases": [{"name": "more"}]})
    assert "read-only replica" in error(reply, 409)
    assert "primary" in error(client.post(f"{path}/root"), 409)


def test_redis_replicas_copy_a_new_user_from_their_primary(client: FlaskClient, world: Any) -> None:
    services, _compute, agent, queue = world
    body = {**BODY, "datastore": {"type": "redis", "version": "7.0"}}
    primary = create(client, world, body).get_json()["instance"]["id"]
    replica = create(client, world, {"name": "copy", "replica_of": primary}).get_json()
    agent.replication_calls.clear()
    user = {"users": [{"name": "late", "password": "pw-123456"}]}
    assert client.post(f"{BASE}/instances/{primary}/users", json=user).status_code == 202
    queue.drain(services)
    follows = [c[1] for c in agent.replication_calls if c[0] == "follow"]
    assert [f.name for f in follows] == ["cellar_" + replica["instance"]["id"].replace("-", "")]
    assert follows[0].host == container_name(primary)


def test_a_replica_takes_its_primarys_configuration_group(client: FlaskClient, world: Any) -> None:
    group = client.post(
        f"{BASE}/configurations",
        json={"configuration": {"name": "big", "values": {"max_connections": 300},
                                "datastore": {"type": "postgresql", "version": "15"}}},
    ).get_json()["configuration"]  # fmt: skip
    primary = create(client, world, {**BODY, "configuration": group["id"]}).get_json()
    reply = create(client, world, {"name": "copy", "replica_of": primary["instance"]["id"]})
    replica = show(client, reply.get_json()["instance"]["id"])
    assert replica["configuration"]["id"] == group["id"]
    assert world[2].applied[-1] == {"max_connections": "300"}


def test_nothing_is_stopped_when_no_replica_answers(client: FlaskClient, world: Any) -> None:
    services, compute, agent, queue = world
    services.settings = dataclasses.replace(services.settings, failover_grace=0.0)
    primary, _replicas = primary_with_replicas(client, world, 1)
    agent.serving = False
    agent.replication_error = AgentError("agent unavailable", retryable=True)
    for _ in range(3):  # the whole host may be down: no automatic failover
        assert replication_watch.watch_primaries(services) == []
    with services.db.session() as session:
        row = session.get(Instance, primary)
        assert row is not None
        row.operating_status = "SHUTDOWN"
    assert action(client, primary, "eject_replica_source").status_code == 202
    queue.drain(services)
    view = show(client, primary)
    assert view["status"] == "ACTIVE" and "no replica answers" in view["fault"]["message"]
    assert primary not in compute.stopped
    event = client.get(f"{BASE}/instances/{primary}/replication_events").get_json()
    assert event["replication_events"][0]["state"] == "FAILED"


def test_a_failed_switchover_gives_the_old_primary_its_writes_back(
    client: FlaskClient, world: Any
) -> None:
    services, _compute, agent, queue = world
    primary, replicas = primary_with_replicas(client, world, 1)
    agent.replication_calls.clear()
    agent.promote_errors.append(AgentError("did not reach position 42 within 15 s"))
    assert action(client, replicas[0], "promote_to_replica_source").status_code == 202
    queue.drain(services)
    assert [c for c in agent.replication_calls if c[0] != "enable"] == [
        ("stop_writes", None),
        ("promote", 42),  # the candidate could not catch up
        ("promote", 0),  # the old primary takes writes again
    ]
    old, candidate = show(client, primary), show(client, replicas[0])
    assert old["status"] == "ACTIVE" and old["replication"]["role"] == "primary"
    assert candidate["status"] == "ACTIVE" and "switchover failed" in candidate["fault"]["message"]
    events = client.get(f"{BASE}/instances/{primary}/replication_events").get_json()
    assert events["replication_events"][0]["state"] == "FAILED"
