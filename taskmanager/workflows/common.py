"""Small helpers that several workflows share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from cellar.errors import AgentError
from cellar.models import Instance, utcnow
from cellar.status import InstanceStatus, OperatingStatus
from taskmanager.workflow import StepFailed

T = TypeVar("T")


def agent_call(fn: Callable[[], T]) -> T:
    """Run an agent call; an error that retrying cannot fix fails the step."""
    try:
        return fn()
    except AgentError as exc:
        if exc.retryable:
            raise
        raise StepFailed(exc.message) from exc


def poll(check: Callable[[], bool], within: float, every: float = 0.05) -> bool:
    """Call ``check`` until it is true or ``within`` seconds have passed."""
    end = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(every)


def seconds_left(started: object, deadline: float) -> float:
    import datetime as dt

    assert isinstance(started, dt.datetime)
    return max(deadline - (utcnow() - started).total_seconds(), 1.0)


def mark_active(instance: Instance) -> None:
    """Everything a client relies on exists: the instance is ACTIVE. Call it in the last
    step of a workflow, the one that saw it, with no extra hop."""
    instance.status = InstanceStatus.ACTIVE.value
    instance.operating_status = OperatingStatus.HEALTHY.value
    instance.fault = None
