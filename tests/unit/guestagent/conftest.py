from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc

from cellar.guestagent.v1 import agent_pb2_grpc
from guestagent.server import AgentServer
from tests.unit.guestagent.support import FakeEngine, JsonLog, Served, json_log


@pytest.fixture
def log() -> Iterator[JsonLog]:
    with json_log() as captured:
        yield captured


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(tmp_path)


@pytest.fixture
def served(fake: FakeEngine) -> Iterator[Served]:
    server = AgentServer(fake, host="127.0.0.1", port=0)
    port = server.start(resume_engine=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(
            server,
            port,
            channel,
            agent_pb2_grpc.GuestAgentStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )
    finally:
        channel.close()
        server.stop(grace=0)
