"""Starting a task: the one way the API and beat ask the task manager to do something.

A task row names its workflow; the task manager's runner picks it from the queue (or,
if the message is lost, from the row), records each step it reaches and the lease it
holds. A new task has no step yet: the runner begins it at its workflow's first step.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from cellar.models import Secret, Task, new_id
from cellar.secrets import SecretBox
from cellar.workflows import WorkflowName

NOT_BEGUN = ""  # the step of a task no worker has begun yet


class Enqueue(Protocol):
    """Puts one step of a task on the queue, to run after ``countdown`` seconds."""

    def __call__(self, task_id: str, countdown: float, request_id: str) -> None: ...


def start_task(
    session: Session,
    box: SecretBox,
    *,
    project_id: str,
    workflow: WorkflowName,
    request_id: str,
    instance_id: str | None = None,
    params: dict[str, object] | None = None,
    secret: dict[str, str] | None = None,
) -> Task:
    """Add a new task (and its sealed secret) to ``session``; enqueue it after commit."""
    task = Task(
        id=new_id(),
        project_id=project_id,
        instance_id=instance_id,
        workflow=WorkflowName(workflow).value,
        step=NOT_BEGUN,
        params=params or {},
        request_id=request_id,
    )
    session.add(task)
    if secret:
        session.flush()
        session.add(Secret(task_id=task.id, ciphertext=box.seal(secret)))
    return task
