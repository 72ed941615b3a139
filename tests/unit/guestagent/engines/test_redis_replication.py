"""Redis replication between real redis-server processes on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    DeleteUserRequest,
    EnableReplicationRequest,
    PrepareRequest,
    ReplicationSource,
    ServiceStatus,
    User,
)
from guestagent.engines.redis import RedisEngine
from guestagent.engines.redis_config import REPLICATION_FILE
from guestagent.errors import EngineError
from tests.unit.guestagent.support import redis_engine

APP_PASSWORD = "app-Pw-7c1d"
REPL_USER = "cellar_repl"
REPL_PASSWORD = 'repl-Secret-"9e4b" x'
APP_USERS = (User("app", APP_PASSWORD),)


def eventually(check: Callable[[], bool], within: float = 1.0) -> bool:
    """True once ``check()`` is, polled for ``within`` seconds; else the test fails."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within} s"
        time.sleep(0.02)
    return True


def login(engine: RedisEngine, user: str = "app", password: str = APP_PASSWORD) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=engine.options.port,
        username=user,
        password=password,
        socket_timeout=5,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def source_of(primary: RedisEngine, name: str) -> ReplicationSource:
    return ReplicationSource(
        host="127.0.0.1",
        port=primary.options.port,
        user=REPL_USER,
        password=REPL_PASSWORD,
        name=name,
    )


def make_primary(engine: RedisEngine) -> RedisEngine:
    assert engine.prepare(PrepareRequest(users=APP_USERS)) is ServiceStatus.HEALTHY
    engine.enable_replication(
        EnableReplicationRequest(REPL_USER, REPL_PASSWORD, replicas=("r1", "r2"), synchronous=True)
    )
    return engine


def make_replica(engine: RedisEngine, primary: RedisEngine, name: str) -> RedisEngine:
    request = PrepareRequest(users=APP_USERS, replica_of=source_of(primary, name))
    assert engine.prepare(request) is ServiceStatus.HEALTHY
    return engine


def value(engine: RedisEngine, key: str) -> str | None:
    with login(engine) as client:
        result = client.get(key)
        return None if result is None else str(result)


@pytest.fixture
def pair() -> Iterator[tuple[RedisEngine, RedisEngine]]:
    """A primary and one replica seeded from it."""
    with redis_engine() as primary, redis_engine() as replica:
        make_primary(primary)
        make_replica(replica, primary, "r1")
        yield primary, replica


@pytest.fixture
def trio() -> Iterator[tuple[RedisEngine, RedisEngine, RedisEngine]]:
    """A primary and two replicas."""
    with ExitStack() as stack:
        primary, first, second = (stack.enter_context(redis_engine()) for _ in range(3))
        make_primary(primary)
        make_replica(first, primary, "r1")
        make_replica(second, primary, "r2")
        yield primary, first, second


def test_keys_written_on_the_primary_are_read_on_the_replica(
    pair: tuple[RedisEngine, RedisEngine],
) -> None:
    primary, replica = pair
    with login(primary) as client:
        client.mset({f"fruit:{i}": f"apple {i}" for i in range(100)})

    with login(replica) as client:
        eventually(lambda: client.get("fruit:99") == "apple 99")
        assert client.mget([f"fruit:{i}" for i in range(100)]) == [f"apple {i}" for i in range(100)]
    assert replica.status().status is ServiceStatus.HEALTHY


def test_the_replica_refuses_writes(pair: tuple[RedisEngine, RedisEngine]) -> None:
    _, replica = pair
    with login(replica) as client, pytest.raises(redis.exceptions.ReadOnlyError):
        client.set("fruit", "pear")


def test_replication_state_on_both_members(pair: tuple[RedisEngine, RedisEngine]) -> None:
    primary, replica = pair
    with login(primary) as client:
        client.set("fruit", "plum")

    on_primary = primary.replication_state()
    assert on_primary.role == "primary"
    assert on_primary.writable is True
    assert on_primary.replicas_connected == 1
    assert on_primary.position_value > 0
    assert on_primary.position == str(on_primary.position_value)

    wanted = primary.replication_state().position_value
    eventually(lambda: replica.replication_state().position_value >= wanted)
    on_replica = replica.replication_state()
    assert on_replica.role == "replica"
    assert on_replica.source_connected is True
    assert on_replica.source_host == "127.0.0.1"
    assert 0 <= on_replica.lag_seconds < 15
    assert on_replica.lag_bytes == -1
    assert on_replica.writable is False
    assert on_replica.replicas_connected == 0


def test_metrics_show_the_lag_on_the_replica_only_while_its_link_is_up(
    pair: tuple[RedisEngine, RedisEngine],
) -> None:
    primary, replica = pair
    eventually(lambda: replica.replication_state().source_connected, within=5.0)

    assert "replication_lag_seconds" not in primary.metrics()
    assert 0 <= replica.metrics()["replication_lag_seconds"] < 15  # pinged every 10 s
    primary.stop()
    assert eventually(lambda: "replication_lag_seconds" not in replica.metrics(), within=5.0)


def test_enable_replication_is_idempotent_and_grants_only_replication(
    pair: tuple[RedisEngine, RedisEngine],
) -> None:
    primary, replica = pair
    request = EnableReplicationRequest(REPL_USER, REPL_PASSWORD, replicas=("r1",))
    primary.enable_replication(request)
    primary.enable_replication(request)

    with login(primary, REPL_USER, REPL_PASSWORD) as client:
        assert client.ping() is True
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("fruit")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("fruit", "fig")
    assert REPL_USER not in [u.name for u in primary.list_users()]
    with login(primary) as client:
        client.set("after", "enable")
    assert eventually(lambda: value(replica, "after") == "enable")
    assert primary.replication_state().replicas_connected == 1
    with pytest.raises(InvalidInput):
        primary.enable_replication(EnableReplicationRequest("cellar", REPL_PASSWORD))


def test_switchover_keeps_every_write_and_the_set_follows_the_new_primary(
    trio: tuple[RedisEngine, RedisEngine, RedisEngine],
) -> None:
    old, new, other = trio
    with login(old) as client:
        for _ in range(50):
            client.incr("counter")

    stopped = old.stop_writes()
    assert stopped.role == "primary" and stopped.writable is False
    assert old.replication_state().writable is False
    with login(old) as client:
        client.connection_pool.connection_kwargs["socket_timeout"] = 0.3
        with pytest.raises(redis.exceptions.TimeoutError):
            client.incr("counter")  # held by the pause, never applied on the old primary

    promoted = new.promote(stopped.position_value, timeout=10)
    assert promoted.role == "primary" and promoted.writable is True
    assert promoted.position_value >= stopped.position_value
    assert value(new, "counter") == "50"
    with login(new) as client:
        assert client.incr("counter") == 51

    old.follow(source_of(new, "old"))
    other.follow(source_of(new, "r2"))

    for member in (old, other):
        assert eventually(lambda: value(member, "counter") == "51", within=5)  # noqa: B023
        assert eventually(lambda: member.replication_state().source_connected)  # noqa: B023
        assert member.replication_state().role == "replica"
        assert member.status().status is ServiceStatus.HEALTHY
    with login(new) as client:
        client.set("after", "switchover")
    for member in (old, other):
        assert eventually(lambda: value(member, "after") == "switchover")  # noqa: B023
    with login(old) as client, pytest.raises(redis.exceptions.ReadOnlyError):
        client.incr("counter")
    assert eventually(lambda: new.replication_state().replicas_connected == 2)
    assert value(new, "counter") == "51"


def test_promote_waits_for_the_position_and_fails_clearly_past_the_timeout(
    pair: tuple[RedisEngine, RedisEngine],
) -> None:
    primary, replica = pair
    beyond = primary.replication_state().position_value + 10**9

    started = time.monotonic()
    with pytest.raises(EngineError, match=f"not promoted.*not {beyond}"):
        replica.promote(beyond, timeout=0.5)

    assert time.monotonic() - started < 3
    assert replica.replication_state().role == "replica"
    assert "replicaof" in (replica.data_dir / REPLICATION_FILE).read_text()


def test_promote_zero_detaches_a_writable_standalone(
    pair: tuple[RedisEngine, RedisEngine],
) -> None:
    primary, replica = pair

    state = replica.promote(0, timeout=5)

    assert state.role == "primary" and state.writable is True
    assert replica.promote(0, timeout=5).role == "primary"  # a no-op on a primary
    with login(replica) as client:
        client.set("mine", "only")
    with login(primary) as client:
        client.set("theirs", "only")
    assert eventually(lambda: primary.replication_state().replicas_connected == 0)
    time.sleep(0.2)
    assert value(replica, "theirs") is None
    assert value(primary, "mine") is None
    assert "replicaof" not in (replica.data_dir / REPLICATION_FILE).read_text()


def test_a_restarted_replica_stays_a_replica(pair: tuple[RedisEngine, RedisEngine]) -> None:
    primary, replica = pair
    persisted = (replica.data_dir / REPLICATION_FILE).read_text()
    assert f'replicaof "127.0.0.1" {primary.options.port}' in persisted
    assert (replica.data_dir / REPLICATION_FILE).stat().st_mode & 0o777 == 0o600

    replica.stop()
    with login(primary) as client:
        client.set("while", "stopped")
    replica.start()

    assert replica.status().status is ServiceStatus.HEALTHY
    assert eventually(lambda: value(replica, "while") == "stopped", within=10)
    state = replica.replication_state()
    assert state.role == "replica" and state.source_connected is True
    with login(replica) as client, pytest.raises(redis.exceptions.ReadOnlyError):
        client.set("fruit", "kiwi")

    stopping = time.monotonic()
    replica.stop()  # right after a full sync, while Redis writes its first AOF
    assert time.monotonic() - stopping < 10
    assert not replica.process.running()


def test_a_replica_with_a_wrong_password_fails_prepare_in_bounded_time() -> None:
    with redis_engine() as primary, redis_engine() as engine:
        make_primary(primary)
        options = dataclasses.replace(engine.options, replica_link_timeout=1.0)
        replica = RedisEngine(engine.data_dir, options)
        wrong = dataclasses.replace(source_of(primary, "r1"), password="not-the-password")
        try:
            started = time.monotonic()
            with pytest.raises(EngineError, match=r"(link to|users of) 127\.0\.0\.1"):
                replica.prepare(PrepareRequest(replica_of=wrong))
            assert time.monotonic() - started < 5
            assert replica.status().status is ServiceStatus.FAILED
            assert not replica.prepared()
        finally:
            replica.stop()


def test_replication_passwords_never_reach_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_engine() as primary, redis_engine() as replica:
        with caplog.at_level(logging.DEBUG):
            make_primary(primary)
            make_replica(replica, primary, "r1")
            replica.promote(0, timeout=5)
            replica.follow(source_of(primary, "r1"))
        text = caplog.text
        for engine in (primary, replica):
            text += "\n".join(engine.logs()["redis"].tail(500))
            text += (engine.data_dir / "users.acl").read_text()

    assert "replicating from 127.0.0.1" in caplog.text
    assert "repl-Secret" not in text


def test_a_replica_copies_the_primarys_users_each_time_it_follows() -> None:
    with redis_engine() as primary, redis_engine() as replica:
        make_primary(primary)
        request = PrepareRequest(replica_of=source_of(primary, "r1"))  # no users of its own
        assert replica.prepare(request) is ServiceStatus.HEALTHY
        assert value(replica, "missing") is None  # "app" logs in with the primary's password
        primary.create_user(User("late", "late-Password-1"))
        primary.delete_user(DeleteUserRequest("app"))
        replica.follow(source_of(primary, "r1"))
        with login(replica, "late", "late-Password-1") as client:
            assert client.ping()
        with pytest.raises(redis.AuthenticationError), login(replica) as client:
            client.ping()
        assert sorted(u.name for u in replica.list_users()) == ["late"]
