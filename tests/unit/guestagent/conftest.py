from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2_grpc

from cellar.guestagent.v1 import agent_pb2_grpc
from guestagent.server import AgentServer
from tests.unit.guestagent.support import FakeEngine, JsonLog, Served, json_log
from tests.unit.guestagent.tls import Tls, make_tls


@pytest.fixture
def log() -> Iterator[JsonLog]:
    with json_log() as captured:
        yield captured


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(tmp_path)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def served(fake: FakeEngine, tls: Tls) -> Iterator[Served]:
    server = AgentServer(fake, tls.server(), host="127.0.0.1", port=0)
    port = server.start(resume_engine=False)
    channel = tls.channel(port)
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
