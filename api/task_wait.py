"""Waiting, boundedly, inside a request for a short task the caller needs the result of.

Enabling root and publishing a log are tasks like any change, but the caller expects the
answer in the reply, as Trove's API gives it: the route starts the task, waits up to
``WAIT_SECONDS`` with :func:`wait`, and answers 202 with :func:`running` when it still runs.
"""

from __future__ import annotations

import time

from api.state import services
from api.views import task_view
from cellar.errors import Busy, CellarError, Unavailable
from cellar.models import Task
from cellar.status import TaskState

WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1


def wait(task_id: str) -> Task | None:
    """The task once it has ended, or None if it still runs after ``WAIT_SECONDS``."""
    end = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < end:
        with services().db.session() as session:
            task = session.get(Task, task_id)
            if task is not None and task.state != TaskState.RUNNING.value:
                session.expunge(task)
                return task
        time.sleep(POLL_SECONDS)
    return None


def running(task_id: str) -> dict[str, object]:
    """The view of a task that is still running, to follow it with ``GET /tasks/{id}``."""
    with services().db.session() as session:
        found = session.get(Task, task_id)
        return task_view(found) if found else {"id": task_id}


def failure(task: Task, what: str) -> CellarError:
    """The error to answer with for a task that ended but not COMPLETED."""
    reason = task.error or task.state.lower()
    if task.state == TaskState.CANCELLED.value:
        return Busy(f"{what} was cancelled: {reason}")
    return Unavailable(f"{what} failed: {reason}")
