"""The task manager's agent client against a served fake engine, over mutual TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellar.errors import AgentError, AgentTimeout
from guestagent.errors import NotPrepared
from guestagent.server import AgentServer
from taskmanager.agent_client import AgentClient
from tests.unit.guestagent.support import FakeEngine
from tests.unit.guestagent.tls import INSTANCE, make_tls


class SlowEngine(FakeEngine):
    """A fake whose metrics wait until ``release`` is set (at most five seconds)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.release = threading.Event()

    def metrics(self) -> dict[str, float]:
        self.release.wait(5)
        return super().metrics()


@pytest.fixture
def fake(tmp_path: Path) -> SlowEngine:
    engine = SlowEngine(tmp_path / "data")
    engine.release.set()
    return engine


@pytest.fixture
def client(fake: SlowEngine, tmp_path: Path) -> Iterator[AgentClient]:
    tls = make_tls(tmp_path)
    server = AgentServer(fake, tls.server(), host="127.0.0.1", port=0)
    port = server.start(resume_engine=False)
    _issued, credentials = tls.client.current()
    agent = AgentClient("127.0.0.1", port, INSTANCE, credentials)
    try:
        yield agent
    finally:
        fake.release.set()
        agent.close()
        server.stop(grace=0)


def test_get_metrics_returns_the_engines_values_by_name(
    client: AgentClient, fake: SlowEngine
) -> None:
    fake.metric_values = {"connections": 4.0, "transactions_total": 123456789.0}

    assert client.get_metrics() == {"connections": 4.0, "transactions_total": 123456789.0}


def test_get_metrics_of_an_unprepared_engine_is_an_agent_error(
    client: AgentClient, fake: SlowEngine
) -> None:
    fake.failures["metrics"] = NotPrepared("the instance is not prepared yet")

    with pytest.raises(AgentError, match="not prepared yet") as caught:
        client.get_metrics()
    assert not caught.value.retryable


def test_get_metrics_gives_up_at_its_deadline(client: AgentClient, fake: SlowEngine) -> None:
    fake.release.clear()

    with pytest.raises(AgentTimeout, match="did not answer GetMetrics in time"):
        client.get_metrics(timeout=0.2)
