"""The gRPC server around a fake engine: conversions, error mapping, request ids, life cycle."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cellar.errors import InvalidInput
from cellar.guestagent.v1 import agent_pb2
from guestagent.engines.messages import (
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    PrepareRequest,
    ServiceStatus,
    StatusReport,
    User,
)
from guestagent.errors import EngineDown, EngineError, NotPrepared
from guestagent.server import SERVICE_NAME, AgentServer, resume, run
from tests.unit.guestagent.support import FakeEngine, JsonLog, Served, free_port
from tests.unit.guestagent.tls import Tls

SECRET = "Pa55-word-never-logged"


def entries(log: JsonLog) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.text.splitlines()]


def test_health_service_reports_serving(served: Served) -> None:
    for service in ("", SERVICE_NAME):
        reply = served.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_get_status_carries_status_detail_and_engine(served: Served, fake: FakeEngine) -> None:
    fake.report = StatusReport(ServiceStatus.FAILED, "initdb failed")

    reply = served.stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5)

    assert reply.status == agent_pb2.FAILED
    assert (reply.detail, reply.engine, reply.version) == ("initdb failed", "fake", "1")


def test_get_metrics_carries_the_engines_values_and_logs_quietly(
    served: Served, fake: FakeEngine, log: JsonLog
) -> None:
    values = {"transactions_total": 9007199254740992.0, "cache_hit_ratio": 0.875}
    fake.metric_values = dict(values)

    reply = served.stub.GetMetrics(agent_pb2.GetMetricsRequest(), timeout=5)

    assert dict(reply.values) == values
    assert fake.calls == [("metrics", None)]
    polls = [e["level"] for e in entries(log) if e["msg"].startswith("GetMetrics")]
    assert polls == ["DEBUG"]


def test_get_metrics_of_an_unprepared_engine_is_a_failed_precondition(
    served: Served, fake: FakeEngine
) -> None:
    fake.failures["metrics"] = NotPrepared("the instance is not prepared yet")

    with pytest.raises(grpc.RpcError) as caught:
        served.stub.GetMetrics(agent_pb2.GetMetricsRequest(), timeout=5)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_prepare_hands_the_engine_one_typed_request(
    served: Served, fake: FakeEngine, log: JsonLog
) -> None:
    request = agent_pb2.PrepareRequest(
        databases=[agent_pb2.Database(name="shop", character_set="UTF8")],
        users=[agent_pb2.User(name="alice", password=SECRET, databases=["shop"])],
        memory_mb=512,
    )

    reply = served.stub.Prepare(request, timeout=5)

    assert reply.status == agent_pb2.HEALTHY
    assert fake.calls == [
        (
            "prepare",
            PrepareRequest(
                databases=(Database("shop", "UTF8"),),
                users=(User("alice", SECRET, databases=("shop",)),),
                memory_mb=512,
            ),
        )
    ]
    assert "Prepare OK" in log.text
    assert SECRET not in log.text


def test_database_and_user_calls_round_trip(served: Served, fake: FakeEngine) -> None:
    stub = served.stub
    created = stub.CreateDatabase(
        agent_pb2.CreateDatabaseRequest(database=agent_pb2.Database(name="crm")), timeout=5
    )
    user = agent_pb2.User(name="bob", password=SECRET, host="%", databases=["crm"])
    user_created = stub.CreateUser(agent_pb2.CreateUserRequest(user=user), timeout=5)
    databases = stub.ListDatabases(agent_pb2.ListDatabasesRequest(), timeout=5).databases
    users = stub.ListUsers(agent_pb2.ListUsersRequest(), timeout=5).users
    db_deleted = stub.DeleteDatabase(agent_pb2.DeleteDatabaseRequest(name="crm"), timeout=5)
    user_deleted = stub.DeleteUser(agent_pb2.DeleteUserRequest(name="bob", host="%"), timeout=5)

    assert (created.created, user_created.created) == (True, True)
    assert [d.name for d in databases] == ["crm"]
    assert [(u.name, u.host, list(u.databases), u.password) for u in users] == [
        ("bob", "%", ["crm"], "")
    ]
    assert (db_deleted.deleted, user_deleted.deleted) == (False, True)
    assert ("delete_database", DeleteDatabaseRequest("crm")) in fake.calls
    assert ("delete_user", DeleteUserRequest("bob", "%")) in fake.calls


def test_create_user_carries_access_and_expiry(served: Served, fake: FakeEngine) -> None:
    until = "2030-01-02T03:04:05Z"
    user = agent_pb2.User(name="dbg", password=SECRET, access="read", valid_until=until)

    served.stub.CreateUser(agent_pb2.CreateUserRequest(user=user), timeout=5)

    assert fake.calls == [("create_user", User("dbg", SECRET, access="read", valid_until=until))]


def test_count_sessions_carries_the_name_host_and_count(served: Served, fake: FakeEngine) -> None:
    fake.session_counts = {"dbg": 3}

    reply = served.stub.CountSessions(
        agent_pb2.CountSessionsRequest(name="dbg", host="%"), timeout=5
    )
    none = served.stub.CountSessions(agent_pb2.CountSessionsRequest(name="other"), timeout=5)

    assert (reply.sessions, none.sessions) == (3, 0)
    assert ("count_sessions", CountSessionsRequest("dbg", "%")) in fake.calls
    assert ("count_sessions", CountSessionsRequest("other", "")) in fake.calls


@pytest.mark.parametrize(
    ("failure", "code", "details"),
    [
        (
            InvalidInput("database name 'a;b' is not allowed"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "database name 'a;b' is not allowed",
        ),
        (NotPrepared("not prepared yet"), grpc.StatusCode.FAILED_PRECONDITION, "not prepared yet"),
        (EngineDown("postgres is down"), grpc.StatusCode.UNAVAILABLE, "postgres is down"),
        (EngineError("postgres refused: disk full"), grpc.StatusCode.INTERNAL, "disk full"),
        (RuntimeError(f"boom {SECRET}"), grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
def test_engine_errors_become_grpc_statuses(
    served: Served,
    fake: FakeEngine,
    log: JsonLog,
    failure: Exception,
    code: grpc.StatusCode,
    details: str,
) -> None:
    fake.failures["list_databases"] = failure

    with pytest.raises(grpc.RpcError) as caught:
        served.stub.ListDatabases(agent_pb2.ListDatabasesRequest(), timeout=5)

    assert caught.value.code() == code
    assert details in caught.value.details()
    assert SECRET not in caught.value.details()
    assert f"ListDatabases failed with {code.name}" in log.text


def test_request_id_from_metadata_is_on_every_log_line_of_the_call(
    served: Served, fake: FakeEngine, log: JsonLog
) -> None:
    served.stub.ListUsers(
        agent_pb2.ListUsersRequest(), timeout=5, metadata=(("x-request-id", "req-abc-1"),)
    )
    served.stub.ListUsers(agent_pb2.ListUsersRequest(), timeout=5)

    lines = [e for e in entries(log) if e["msg"].startswith(("ListUsers", "fake listing"))]
    assert [(e["request_id"], e["msg"].split(" in ")[0]) for e in lines] == [
        ("req-abc-1", "fake listing users"),
        ("req-abc-1", "ListUsers OK"),
        ("-", "fake listing users"),
        ("-", "ListUsers OK"),
    ]


def test_stop_stops_the_engine_then_the_server(served: Served, fake: FakeEngine) -> None:
    served.server.stop(grace=0)

    assert fake.stopped.is_set()
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "calls"),
    [(ServiceStatus.SHUTDOWN, ["status", "start"]), (ServiceStatus.NEW, ["status"])],
)
def test_resume_starts_only_a_prepared_engine(
    fake: FakeEngine, status: ServiceStatus, calls: list[str]
) -> None:
    fake.report = StatusReport(status)

    resume(fake)

    assert [method for method, _ in fake.calls] == calls


def test_server_start_resumes_a_prepared_engine(fake: FakeEngine, tls: Tls) -> None:
    fake.report = StatusReport(ServiceStatus.SHUTDOWN)
    server = AgentServer(fake, tls.server(), host="127.0.0.1", port=0)
    server.start()
    try:
        assert fake.started.wait(timeout=5)
        assert fake.status().status is ServiceStatus.HEALTHY
    finally:
        server.stop(grace=0)


def test_run_serves_until_sigterm_then_stops_everything(fake: FakeEngine, tls: Tls) -> None:
    port = free_port()

    def terminate_when_serving() -> None:
        with tls.channel(port) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    break
                except grpc.RpcError:
                    time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_when_serving)
    killer.start()
    previous = signal.getsignal(signal.SIGTERM)

    assert run(fake, tls.server(), host="127.0.0.1", port=port) == 0

    killer.join()
    assert fake.stopped.is_set()
    assert signal.getsignal(signal.SIGTERM) is previous


def test_restart_stops_then_starts_the_engine(served: Served, fake: FakeEngine) -> None:
    reply = served.stub.Restart(agent_pb2.RestartRequest(), timeout=5)
    assert reply.status == agent_pb2.HEALTHY
    assert [name for name, _ in fake.calls if name in ("stop", "start")] == ["stop", "start"]


def test_restart_of_an_unprepared_engine_is_a_failed_precondition(
    served: Served, fake: FakeEngine
) -> None:
    fake.failures["start"] = NotPrepared("the engine is not prepared")
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.Restart(agent_pb2.RestartRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_logs_are_listed_and_tailed(served: Served, fake: FakeEngine, tmp_path: Path) -> None:
    from guestagent.logfile import LogFile

    log = LogFile(tmp_path / "engine.log")
    for number in range(10):
        log.append(f"message {number}")
    fake.log_files = {"engine": log}
    listed = served.stub.ListLogs(agent_pb2.ListLogsRequest(), timeout=5)
    assert [(entry.name, entry.size > 0) for entry in listed.logs] == [("engine", True)]
    tail = served.stub.TailLog(agent_pb2.TailLogRequest(name="engine", lines=2), timeout=5)
    assert list(tail.lines) == ["message 8", "message 9"]
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.TailLog(agent_pb2.TailLogRequest(name="other", lines=2), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "engine" in (caught.value.details() or "")
    whole = b"".join(
        chunk.data
        for chunk in served.stub.ReadLog(agent_pb2.ReadLogRequest(name="engine"), timeout=5)
    )
    assert whole == log.path.read_bytes()
    request = agent_pb2.ReadLogRequest(name="engine", offset=len(whole) - 10)
    assert b"".join(c.data for c in served.stub.ReadLog(request, timeout=5)) == whole[-10:]
