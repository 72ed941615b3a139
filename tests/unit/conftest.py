from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakes import make_services


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    services, compute, agent, queue = make_services(tmp_path / "home", monkeypatch)
    yield services, compute, agent, queue
    services.db.engine.dispose()
