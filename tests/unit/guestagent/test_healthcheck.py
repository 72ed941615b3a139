from __future__ import annotations

import pytest

from guestagent import healthcheck
from guestagent.engines.messages import ServiceStatus, StatusReport
from tests.unit.guestagent.support import FakeEngine, Served, free_port


def test_healthy_engine_exits_zero(
    served: Served, fake: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.report = StatusReport(ServiceStatus.HEALTHY)

    assert healthcheck.main(["--port", str(served.port)]) == 0
    assert capsys.readouterr().out.strip() == "HEALTHY"


@pytest.mark.parametrize("status", [ServiceStatus.NEW, ServiceStatus.SHUTDOWN])
def test_any_other_status_exits_one_with_the_detail(
    served: Served, fake: FakeEngine, capsys: pytest.CaptureFixture[str], status: ServiceStatus
) -> None:
    fake.report = StatusReport(status, "postgres is not running")

    assert healthcheck.main(["--port", str(served.port)]) == 1
    assert capsys.readouterr().out.strip() == f"{status.value}: postgres is not running"


def test_unreachable_agent_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["--port", str(free_port()), "--timeout", "0.5"]) == 1
    assert capsys.readouterr().out.startswith("agent unreachable")
