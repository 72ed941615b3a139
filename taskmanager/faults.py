"""Fault injection for the crash tests: the worker kills itself at a chosen step.

For tests only; nothing here acts unless one of these is set in the worker's environment:

- ``CELLAR_FAULT=<workflow>:<step>:<before|during>``
- ``CELLAR_FAULT_FILE=<path>``: a file holding such a line, read when a step begins and
  removed when the fault fires, so a test arms one fault at a time in a running worker.

``before`` kills the worker (SIGKILL) just before the step runs, with its lease taken.
``during`` kills it inside the step, once the step has done its first piece of work in
the outside world (a call to Docker, an agent, the backup storage or the endpoints, or
a chunk of a stream), or when the step ends if it made no such call; either way the
step's decision is never recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

WHEN = ("before", "during")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Armed:
    """A ``during`` fault waiting for the step's first piece of outside work."""

    where: str

    def point(self) -> None:
        _fire(self.where)


_armed: contextvars.ContextVar[Armed | None] = contextvars.ContextVar("fault", default=None)


def enabled() -> bool:
    return bool(os.environ.get("CELLAR_FAULT") or os.environ.get("CELLAR_FAULT_FILE"))


def parse(spec: str) -> tuple[str, str, str]:
    """``(workflow, step, when)`` of a fault line; ValueError when it is not one."""
    parts = spec.strip().split(":")
    if len(parts) != 3 or parts[2] not in WHEN or not all(parts):
        raise ValueError(f"a fault is <workflow>:<step>:<before|during>, not {spec!r}")
    return parts[0], parts[1], parts[2]


def _wanted() -> tuple[str, str, str] | None:
    spec = os.environ.get("CELLAR_FAULT", "")
    path = os.environ.get("CELLAR_FAULT_FILE", "")
    if not spec and path:
        try:
            spec = Path(path).read_text()
        except OSError:
            return None
    return parse(spec) if spec.strip() else None


def _fire(where: str) -> None:
    path = os.environ.get("CELLAR_FAULT_FILE", "")
    if path:
        Path(path).unlink(missing_ok=True)
    logger.warning("fault injected: killing this worker (pid %d) %s", os.getpid(), where)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def before_step(workflow: str, step: str) -> None:
    """Kill the worker here if a ``before`` fault names this step."""
    if enabled() and _wanted() == (workflow, step, "before"):
        _fire(f"before step {workflow}:{step}")


@contextlib.contextmanager
def during_step(workflow: str, step: str) -> Iterator[Armed | None]:
    """Arm a ``during`` fault that names this step for the work done inside the block
    (in this thread, in threads that copy its context, and through what it yields)."""
    if not enabled() or _wanted() != (workflow, step, "during"):
        yield None
        return
    armed = Armed(f"during step {workflow}:{step}")
    token = _armed.set(armed)
    try:
        yield armed
    finally:
        _armed.reset(token)
        _fire(armed.where + " (at its end)")


def point() -> None:
    """A piece of work was done in the outside world: an armed fault fires now."""
    armed = _armed.get()
    if armed is not None:
        armed.point()


def wrap(target: T) -> T:
    """``target`` with every method call followed by :func:`point` (after the first item,
    for a call that returns an iterator)."""
    return _Faulty(target)  # type: ignore[return-value]


class _Faulty:
    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not callable(found):
            return found

        @functools.wraps(found)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = found(*args, **kwargs)
            if isinstance(result, Iterator):
                return _first_then_point(result)
            point()
            return result

        return call


def _first_then_point(items: Iterator[Any]) -> Iterator[Any]:
    first = True
    for item in items:
        yield item
        if first:
            first = False
            point()
