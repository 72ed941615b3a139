"""RedisEngine against a real redis-server in a temporary data directory."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cellar.errors import InvalidInput
from guestagent.engines.messages import (
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    GrantAccessRequest,
    PrepareRequest,
    RevokeAccessRequest,
    ServiceStatus,
    User,
)
from guestagent.engines.redis import RedisEngine
from guestagent.engines.redis_admin import info_metrics
from guestagent.engines.redis_wire import ReplyError, encode, read_reply
from guestagent.errors import NotPrepared, Unsupported
from tests.unit.guestagent.support import redis_engine

ALICE_PASSWORD = 'alice-Pw-9f2e "quoted" \' >spaces'
SHOP = PrepareRequest(
    users=(User("alice", ALICE_PASSWORD),),
    memory_mb=256,
    configuration=(("maxmemory-policy", "allkeys-lru"), ("lazyfree-lazy-eviction", "true")),
)
BAD_NAMES = ["bad name", "x;drop", "a>b", "1abc", "", "x" * 64, "default", "cellar", "root"]
MB = 1024 * 1024


@pytest.fixture(scope="module")
def rds() -> Iterator[RedisEngine]:
    with redis_engine() as engine:
        assert engine.prepare(SHOP) is ServiceStatus.HEALTHY
        yield engine


def login(engine: RedisEngine, user: str | None, password: str | None) -> redis.Redis:
    """A client over TCP; commands fail if the login is refused."""
    return redis.Redis(
        host="127.0.0.1",
        port=engine.options.port,
        username=user,
        password=password,
        socket_timeout=5,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),  # a refused login fails at once
    )


def config(engine: RedisEngine, name: str) -> str:
    """A running value, read with the client library as the agent's own user."""
    password = (engine.data_dir / ".cellar-admin-password").read_text().strip()
    with redis.Redis(
        unix_socket_path=str(engine.options.unix_socket),
        username="cellar",
        password=password,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    ) as client:
        return str(client.config_get(name)[name])


def test_prepare_makes_a_healthy_server_with_the_users(rds: RedisEngine) -> None:
    assert rds.status().status is ServiceStatus.HEALTHY
    assert rds.list_users() == [User("alice")]
    assert (rds.data_dir / ".cellar-prepared").exists()
    assert (rds.data_dir / ".cellar-admin-password").stat().st_mode & 0o777 == 0o600


def test_prepare_applies_memory_and_configuration(rds: RedisEngine) -> None:
    assert config(rds, "maxmemory") == str(192 * MB)
    assert config(rds, "maxmemory-policy") == "allkeys-lru"
    assert config(rds, "lazyfree-lazy-eviction") == "yes"
    assert config(rds, "appendonly") == "yes"


def test_user_sets_and_gets_keys_over_tcp(rds: RedisEngine) -> None:
    with login(rds, "alice", ALICE_PASSWORD) as client:
        client.set("fruit", "apples")
        assert client.get("fruit") == "apples"
        assert client.incr("counter") >= 1


def test_user_cannot_administer_the_server(rds: RedisEngine) -> None:
    with login(rds, "alice", ALICE_PASSWORD) as client:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_get("maxmemory")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("ACL", "LIST")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.shutdown()
    assert rds.status().status is ServiceStatus.HEALTHY


def test_anonymous_and_wrong_passwords_are_refused(rds: RedisEngine) -> None:
    with login(rds, None, None) as client, pytest.raises(redis.exceptions.AuthenticationError):
        client.get("fruit")
    with login(rds, "alice", "not-the-password") as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.get("fruit")
    with login(rds, "default", "any-password") as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.get("fruit")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_user_names_are_refused(rds: RedisEngine, name: str) -> None:
    with pytest.raises(InvalidInput):
        rds.create_user(User(name, "some-password"))
    with pytest.raises(InvalidInput):
        rds.delete_user(DeleteUserRequest(name))
    with pytest.raises(InvalidInput):
        rds.change_password(User(name, "some-password"))
    with pytest.raises(InvalidInput):
        rds.count_sessions(CountSessionsRequest(name))


def test_create_user_is_idempotent_and_delete_user_logs_it_out(rds: RedisEngine) -> None:
    assert rds.create_user(User("bob", "bob-pw-1")) is True
    assert rds.create_user(User("bob", "other-pw")) is False
    with login(rds, "bob", "bob-pw-1") as client:
        assert client.ping() is True

    assert rds.delete_user(DeleteUserRequest("bob")) is True
    assert rds.delete_user(DeleteUserRequest("bob")) is False
    assert "bob" not in [u.name for u in rds.list_users()]
    with login(rds, "bob", "bob-pw-1") as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()


def test_change_password_replaces_the_old_one(rds: RedisEngine) -> None:
    rds.create_user(User("carol", "carol-old-1"))

    assert rds.change_password(User("carol", "carol-new-2")) is True
    assert rds.change_password(User("nobody", "whatever-1")) is False
    with login(rds, "carol", "carol-old-1") as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    with login(rds, "carol", "carol-new-2") as client:
        assert client.ping() is True


def test_read_access_runs_read_commands_only(rds: RedisEngine) -> None:
    with login(rds, "alice", ALICE_PASSWORD) as client:
        client.set("shared", "by alice")
    assert rds.create_user(User("reader", "reader-pw-1", access="read")) is True

    with login(rds, "reader", "reader-pw-1") as client:
        assert client.get("shared") == "by alice"
        assert client.exists("shared") == 1
        for command in (
            ("SET", "shared", "by reader"),
            ("DEL", "shared"),
            ("FLUSHALL",),
            ("KEYS", "*"),
            ("CONFIG", "GET", "maxmemory"),
            ("CLIENT", "KILL", "ID", "1"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    with login(rds, "alice", ALICE_PASSWORD) as client:
        assert client.get("shared") == "by alice"


def test_write_access_changes_keys_but_not_the_server(rds: RedisEngine) -> None:
    assert rds.create_user(User("writer", "writer-pw-1", access="write")) is True

    with login(rds, "writer", "writer-pw-1") as client:
        client.set("written", "by writer")
        assert client.get("written") == "by writer"
        assert client.incr("writes") >= 1
        assert client.delete("written") == 1
        for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("ACL", "LIST")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)


@pytest.mark.parametrize("access", ["admin", "READ", "all", " read"])
def test_an_unknown_access_is_refused(rds: RedisEngine, access: str) -> None:
    with pytest.raises(InvalidInput, match="access"):
        rds.create_user(User("oddity", "oddity-pw-1", access=access))
    with pytest.raises(InvalidInput, match="access"):
        rds.prepare(PrepareRequest(users=(User("oddity", "oddity-pw-1", access=access),)))

    assert "oddity" not in [u.name for u in rds.list_users()]


def test_count_sessions_counts_the_users_clients(rds: RedisEngine) -> None:
    rds.create_user(User("counted", "counted-pw-1"))
    assert rds.count_sessions(CountSessionsRequest("counted")) == 0

    first, second = login(rds, "counted", "counted-pw-1"), login(rds, "counted", "counted-pw-1")
    with first, second:
        assert first.ping() and second.ping()
        assert rds.count_sessions(CountSessionsRequest("counted")) == 2
        assert rds.count_sessions(CountSessionsRequest("count")) == 0  # a prefix is not it
        assert rds.count_sessions(CountSessionsRequest("nobody")) == 0
    deadline = time.monotonic() + 5
    while rds.count_sessions(CountSessionsRequest("counted")) and time.monotonic() < deadline:
        time.sleep(0.02)  # the server notices a closed client a moment later
    assert rds.count_sessions(CountSessionsRequest("counted")) == 0


def test_passwords_never_reach_the_logs(rds: RedisEngine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        rds.create_user(User("dave", "dave-secret-Pw-77"))
        rds.change_password(User("dave", "dave-secret-Pw-88"))
    text = caplog.text + "\n".join(rds.logs()["redis"].tail(200))
    text += (rds.data_dir / "users.acl").read_text()

    assert "dave" in caplog.text
    assert "dave-secret-Pw" not in text


def test_databases_are_unsupported(rds: RedisEngine) -> None:
    with pytest.raises(Unsupported, match="no named databases"):
        rds.create_database(Database("shop"))
    with pytest.raises(Unsupported):
        rds.list_databases()
    with pytest.raises(Unsupported):
        rds.delete_database(DeleteDatabaseRequest("shop"))
    with pytest.raises(Unsupported):
        rds.grant_access(GrantAccessRequest("alice", databases=("shop",)))
    with pytest.raises(Unsupported):
        rds.revoke_access(RevokeAccessRequest("alice", "shop"))


def test_enable_root_gives_a_working_default_login(rds: RedisEngine) -> None:
    assert rds.enable_root("root-Pw-1234") == "default"

    with login(rds, "default", "root-Pw-1234") as client:
        assert client.config_get("maxmemory-policy")
    with login(rds, None, "root-Pw-1234") as client:
        assert client.ping() is True
    with login(rds, None, None) as client, pytest.raises(redis.exceptions.AuthenticationError):
        client.ping()
    assert "default" not in [u.name for u in rds.list_users()]

    assert rds.disable_root() is True
    with (
        login(rds, "default", "root-Pw-1234") as client,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        client.ping()
    assert rds.disable_root() is False
    assert rds.list_users() is not None  # the agent's own login still works


def test_resize_changes_maxmemory_live(rds: RedisEngine) -> None:
    assert rds.resize(1024) is False

    assert config(rds, "maxmemory") == str(768 * MB)
    assert f"maxmemory {768 * MB}" in (rds.data_dir / "redis.conf").read_text()


def test_apply_configuration_sets_dynamic_values_and_reports_static_ones(
    rds: RedisEngine,
) -> None:
    assert rds.apply_configuration({"maxmemory-policy": "volatile-ttl", "timeout": "300"}) is False
    assert config(rds, "maxmemory-policy") == "volatile-ttl"
    assert config(rds, "timeout") == "300"
    assert config(rds, "lazyfree-lazy-eviction") == "no"  # left out: back to the default
    running = rds.get_configuration(["timeout", "maxmemory-policy", "no-such-thing"])
    assert running == {"timeout": "300", "maxmemory-policy": "volatile-ttl"}

    assert rds.apply_configuration({"databases": "32"}) is True
    assert config(rds, "databases") == "16"
    assert config(rds, "maxmemory-policy") == "noeviction"
    assert "databases 32" in (rds.data_dir / "redis-user.conf").read_text()

    with pytest.raises(InvalidInput):
        rds.apply_configuration({"maxmemory-policy": "lru; FLUSHALL"})
    with pytest.raises(InvalidInput):
        rds.apply_configuration({"dir": "/tmp"})


def test_stop_and_start_keep_the_keys_users_and_configuration(rds: RedisEngine) -> None:
    with login(rds, "alice", ALICE_PASSWORD) as client:
        client.set("kept", "across restarts")

    rds.stop()
    assert rds.status().status is ServiceStatus.SHUTDOWN
    rds.start()

    assert rds.status().status is ServiceStatus.HEALTHY
    with login(rds, "alice", ALICE_PASSWORD) as client:
        assert client.get("kept") == "across restarts"
    assert config(rds, "databases") == "32"
    assert "alice" in [u.name for u in rds.list_users()]


def test_a_new_engine_on_a_prepared_data_dir_resumes_it(rds: RedisEngine) -> None:
    rds.stop()
    again = RedisEngine(rds.data_dir, rds.options)
    assert again.status().status is ServiceStatus.SHUTDOWN
    try:
        again.start()
        assert again.status().status is ServiceStatus.HEALTHY
        with login(again, "alice", ALICE_PASSWORD) as client:
            assert client.get("kept") == "across restarts"
    finally:
        again.stop()
    rds.start()


def test_logs_hold_the_server_output(rds: RedisEngine) -> None:
    lines = rds.logs()["redis"].tail(50)

    assert any("Ready to accept connections" in line for line in lines)


def test_the_wire_protocol_reads_every_reply_kind() -> None:
    replies = io.BytesIO(b"+OK\r\n:42\r\n$-1\r\n*2\r\n$4\r\na\r\nb\r\n:1\r\n*-1\r\n-ERR no\r\n")

    assert encode(("SET", "k", 7)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n"
    assert [read_reply(replies) for _ in range(5)] == [b"OK", 42, None, [b"a\r\nb", 1], None]
    with pytest.raises(ReplyError, match="ERR no"):
        read_reply(replies)
    with pytest.raises(ConnectionError):
        read_reply(replies)


def test_an_unprepared_engine_refuses_user_calls() -> None:
    with redis_engine() as engine:
        assert engine.status().status is ServiceStatus.NEW
        with pytest.raises(NotPrepared):
            engine.create_user(User("erin", "erin-pw-1"))
        with pytest.raises(NotPrepared):
            engine.start()
        with pytest.raises(Unsupported):
            engine.prepare(PrepareRequest(databases=(Database("shop"),)))
        assert not engine.data_dir.exists()


def test_metrics_count_clients_commands_and_keyspace_hits(
    rds: RedisEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rds, "cgroup_dir", tmp_path)  # no cgroup file: no memory_bytes
    with login(rds, "alice", ALICE_PASSWORD) as client:
        client.set("metrics:kept", "v")
        rds.admin.run("CONFIG", "RESETSTAT")  # the counters start again from 0
        fresh = rds.metrics()
        for key in ("metrics:kept", "metrics:kept", "metrics:kept", "metrics:gone"):
            client.get(key)
        values = rds.metrics()

    assert values.keys() == {
        "connections",
        "commands_total",
        "cache_hit_ratio",
        "engine_memory_bytes",
        "uptime_seconds",
        "volume_used_bytes",
    }, "a primary has no lag, and Redis counts no transactions"
    assert fresh["cache_hit_ratio"] == 1.0  # nothing looked up since the reset
    assert values["cache_hit_ratio"] == 0.75
    assert values["commands_total"] >= fresh["commands_total"] + 4
    assert values["connections"] >= 2  # alice and the agent
    assert values["engine_memory_bytes"] > 0
    assert 0 <= values["uptime_seconds"] < 3600


def test_info_metrics_from_given_fields() -> None:
    info = {
        "connected_clients": "12",
        "total_commands_processed": "5000",
        "used_memory": "1048576",
        "uptime_in_seconds": "86400",
        "keyspace_hits": "900",
        "keyspace_misses": "100",
        "role": "master",
    }
    primary = {
        "connections": 12.0,
        "commands_total": 5000.0,
        "engine_memory_bytes": 1048576.0,
        "uptime_seconds": 86400.0,
        "cache_hit_ratio": 0.9,
    }

    assert info_metrics(info) == primary
    replica = {**info, "role": "slave", "master_last_io_seconds_ago": "2"}
    assert info_metrics(replica) == {**primary, "replication_lag_seconds": 2.0}
    link_down = {**info, "role": "slave", "master_last_io_seconds_ago": "-1"}
    assert info_metrics(link_down) == primary
