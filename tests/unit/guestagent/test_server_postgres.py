"""The whole agent end to end: a real gRPC channel to a server running real PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from guestagent.server import AgentServer
from tests.unit.guestagent.support import JsonLog, postgres_engine
from tests.unit.guestagent.tls import Tls

PASSWORD = "e2e-Secret-pw-4711"


def call(stub: Any, method: str, request: Any, request_id: str) -> Any:
    return getattr(stub, method)(request, timeout=30, metadata=(("x-request-id", request_id),))


def test_prepare_and_manage_over_grpc_then_resume_after_restart(log: JsonLog, tls: Tls) -> None:
    with postgres_engine() as engine:
        server = AgentServer(engine, tls.server(), host="127.0.0.1", port=0)
        port = server.start()
        channel = tls.channel(port)
        stub = agent_pb2_grpc.GuestAgentStub(channel)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
            assert stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5).status == agent_pb2.NEW

            started = time.monotonic()
            prepared = call(
                stub,
                "Prepare",
                agent_pb2.PrepareRequest(
                    databases=[agent_pb2.Database(name="shop"), agent_pb2.Database(name="stats")],
                    users=[agent_pb2.User(name="alice", password=PASSWORD, databases=["shop"])],
                    memory_mb=256,
                ),
                "req-e2e-prepare",
            )
            prepare_seconds = time.monotonic() - started
            status = stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5)

            assert prepared.status == agent_pb2.HEALTHY
            assert (status.status, status.engine, status.version) == (
                agent_pb2.HEALTHY,
                "postgresql",
                "15",
            )
            print(f"prepare over gRPC took {prepare_seconds * 1000:.0f} ms")

            with psycopg.connect(
                host="127.0.0.1",
                port=engine.options.port,
                user="alice",
                password=PASSWORD,
                dbname="shop",
            ) as conn:
                conn.execute("CREATE TABLE t (v int)")
                conn.execute("INSERT INTO t VALUES (1)")

            created = call(
                stub,
                "CreateUser",
                agent_pb2.CreateUserRequest(
                    user=agent_pb2.User(name="bob", password="b0b-pass", databases=["stats"])
                ),
                "req-e2e-user",
            )
            users = stub.ListUsers(agent_pb2.ListUsersRequest(), timeout=5).users
            databases = stub.ListDatabases(agent_pb2.ListDatabasesRequest(), timeout=5).databases
            assert created.created is True
            assert [(u.name, list(u.databases), u.password) for u in users] == [
                ("alice", ["shop"], ""),
                ("bob", ["stats"], ""),
            ]
            assert [(d.name, d.character_set) for d in databases] == [
                ("shop", "UTF8"),
                ("stats", "UTF8"),
            ]

            with pytest.raises(grpc.RpcError) as caught:
                call(
                    stub,
                    "CreateDatabase",
                    agent_pb2.CreateDatabaseRequest(database=agent_pb2.Database(name='x";--')),
                    "req-e2e-bad",
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not allowed" in caught.value.details()

            deleted = stub.DeleteUser(agent_pb2.DeleteUserRequest(name="bob"), timeout=30)
            dropped = stub.DeleteDatabase(agent_pb2.DeleteDatabaseRequest(name="stats"), timeout=30)
            assert (deleted.deleted, dropped.deleted) == (True, True)
        finally:
            channel.close()
            server.stop(grace=1)
        assert engine.status().status.value == "SHUTDOWN"

        restarted = AgentServer(engine, tls.server(), host="127.0.0.1", port=0)
        port = restarted.start()
        try:
            with tls.channel(port) as channel:
                stub = agent_pb2_grpc.GuestAgentStub(channel)
                deadline = time.monotonic() + 30
                while stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5).status != (
                    agent_pb2.HEALTHY
                ):
                    assert time.monotonic() < deadline, "the engine was not resumed"
                    time.sleep(0.05)
                listed = stub.ListDatabases(agent_pb2.ListDatabasesRequest(), timeout=5)
                assert [d.name for d in listed.databases] == ["shop"]
        finally:
            restarted.stop(grace=1)

    entries = [json.loads(line) for line in log.text.splitlines()]
    by_id = {e["request_id"] for e in entries if e["msg"].startswith("Prepare OK")}
    assert by_id == {"req-e2e-prepare"}
    assert any(
        e["request_id"] == "req-e2e-prepare" and e["msg"] == "created database shop"
        for e in entries
    )
    assert any(
        e["request_id"] == "req-e2e-user" and e["msg"].startswith("created user bob")
        for e in entries
    )
    assert any(e["request_id"] == "req-e2e-bad" and "INVALID_ARGUMENT" in e["msg"] for e in entries)
    assert PASSWORD not in log.text
    assert "b0b-pass" not in log.text
