from __future__ import annotations

from typing import Any

import pytest

from tests.unit.taskmanager.workflows.support import World


@pytest.fixture
def world(world: Any) -> World:
    """The unit tests' world (see tests/unit/conftest.py), where an instance may have an
    agent of its own (``World.agent_of``)."""
    services, compute, agent, queue = world
    return World.of(services, compute, agent, queue)
