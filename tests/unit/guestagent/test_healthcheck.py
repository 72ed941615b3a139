from __future__ import annotations

import pytest

from guestagent import healthcheck
from guestagent.engines.messages import ServiceStatus, StatusReport
from tests.unit.guestagent.support import FakeEngine, Served, free_port
from tests.unit.guestagent.tls import INSTANCE, Tls


@pytest.fixture(autouse=True)
def _inside_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLAR_INSTANCE_ID", INSTANCE)


def test_healthy_engine_exits_zero(
    served: Served, fake: FakeEngine, tls: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.report = StatusReport(ServiceStatus.HEALTHY)

    assert healthcheck.main(["--port", str(served.port), "--tls-dir", str(tls.folder)]) == 0
    assert capsys.readouterr().out.strip() == "HEALTHY"


@pytest.mark.parametrize("status", [ServiceStatus.NEW, ServiceStatus.SHUTDOWN])
def test_any_other_status_exits_one_with_the_detail(
    served: Served,
    fake: FakeEngine,
    tls: Tls,
    capsys: pytest.CaptureFixture[str],
    status: ServiceStatus,
) -> None:
    fake.report = StatusReport(status, "postgres is not running")

    assert healthcheck.main(["--port", str(served.port), "--tls-dir", str(tls.folder)]) == 1
    assert capsys.readouterr().out.strip() == f"{status.value}: postgres is not running"


def test_unreachable_agent_exits_one(tls: Tls, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--port", str(free_port()), "--timeout", "0.5", "--tls-dir", str(tls.folder)]
    assert healthcheck.main(argv) == 1
    assert capsys.readouterr().out.startswith("agent unreachable")
