from __future__ import annotations

from pathlib import Path

import pytest

from guestagent.engines import ENGINES, engine_class
from guestagent.engines.base import Engine
from guestagent.engines.messages import ServiceStatus


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_can_be_built_and_reports_new(name: str, tmp_path: Path) -> None:
    engine = engine_class(name)(tmp_path / "data")

    assert isinstance(engine, Engine)
    assert engine.name == name
    assert engine.version
    assert engine.status().status is ServiceStatus.NEW
    assert not (tmp_path / "data").exists()


def test_an_engine_missing_a_method_cannot_be_built(tmp_path: Path) -> None:
    class Incomplete(Engine):
        name = "incomplete"
        version = "0"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(tmp_path)  # type: ignore[abstract]
