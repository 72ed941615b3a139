"""Runs one step of a task under a lease, and persists the step's decision.

``run_step`` is what the Celery task calls; ``reconcile`` (run by beat) puts back
on the queue any task whose message was lost, for instance with a killed worker:
its lease runs out and the step runs again, finding its earlier work.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cellar import logs
from cellar.errors import CellarError
from cellar.models import Secret, Task, new_id, utcnow
from cellar.status import TaskState
from taskmanager.context import Services, StepContext
from taskmanager.workflow import DONE, NEXT, WORKFLOWS, Decision, Hop, Nap, StepFailed, Workflow

logger = logging.getLogger(__name__)

EARLY_SLACK = dt.timedelta(milliseconds=50)
RECONCILE_GRACE = dt.timedelta(seconds=5)
MAX_BACKOFF = 5.0
QUEUED_NAP = 0.2


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def start_task(
    services: Services,
    session: Session,
    *,
    project_id: str,
    workflow: str,
    request_id: str,
    instance_id: str | None = None,
    params: dict[str, object] | None = None,
    secret: dict[str, str] | None = None,
) -> Task:
    """Add a new task (and its sealed secret) to ``session``; enqueue it after commit."""
    flow = WORKFLOWS[workflow]
    task = Task(
        id=new_id(),
        project_id=project_id,
        instance_id=instance_id,
        workflow=workflow,
        step=flow.first,
        params=params or {},
        request_id=request_id,
    )
    session.add(task)
    if secret:
        session.flush()
        session.add(Secret(task_id=task.id, ciphertext=services.secrets.seal(secret)))
    return task


def _acquire(services: Services, task_id: str, owner: str) -> bool:
    now = utcnow()
    lease = dt.timedelta(seconds=services.settings.step_lease)
    with services.db.session() as session:
        result = session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.state == TaskState.RUNNING.value,
                Task.next_run_at <= now + EARLY_SLACK,
                or_(Task.lease_until.is_(None), Task.lease_until < now),
            )
            .values(lease_until=now + lease, lease_owner=owner, attempt=Task.attempt + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def run_step(services: Services, task_id: str) -> None:
    """Run the current step of ``task_id`` if it is due and nobody else holds it."""
    if not _acquire(services, task_id, owner_name()):
        logger.debug("task %s is not due or is held elsewhere", task_id)
        return
    with services.db.session() as session:
        task = session.get(Task, task_id)
        if task is None:
            return
        with logs.bound_request_id(task.request_id):
            if _behind_earlier_task(session, task):
                _apply(services, StepContext(services, session, task), WORKFLOWS[task.workflow],
                       Nap(QUEUED_NAP), 0.0)  # fmt: skip
                return
            _run_leased(services, StepContext(services, session, task))


def _behind_earlier_task(session: Session, task: Task) -> bool:
    """True while an earlier task of the same instance still runs (tasks go in order)."""
    if task.instance_id is None or not WORKFLOWS[task.workflow].waits_for_earlier:
        return False
    earlier = session.scalars(
        select(Task.id).where(
            Task.instance_id == task.instance_id,
            Task.state == TaskState.RUNNING.value,
            Task.id != task.id,
            or_(
                Task.created < task.created,
                (Task.created == task.created) & (Task.id < task.id),
            ),
        )
    ).first()
    if earlier is not None:
        task.attempt -= 1
        logger.info("task %s waits for earlier task %s", task.id, earlier)
    return earlier is not None


def _run_leased(services: Services, ctx: StepContext) -> None:
    task = ctx.task
    flow = WORKFLOWS[task.workflow]
    step = flow.step(task.step)
    started = time.monotonic()
    elapsed = (utcnow() - task.step_started_at).total_seconds()
    deadline = step.deadline_in(services.settings)
    if elapsed > deadline:
        reason = f"{step.describe} did not finish within {deadline:.0f} s"
        if task.error:
            reason += f" (last error: {task.error})"
        _fail(ctx, flow, reason)
        return
    logger.info("task %s %s: step %s, attempt %d", task.id, flow.name, step.label, task.attempt)
    try:
        decision: Decision = step.run(ctx)
    except StepFailed as exc:
        ctx.session.rollback()
        _fail(ctx, flow, str(exc))
        return
    except (CellarError, LookupError) as exc:
        ctx.session.rollback()
        decision = _retry_later(ctx, str(exc))
    except Exception as exc:
        ctx.session.rollback()
        logger.exception("step %s of task %s raised", step.label, task.id)
        decision = _retry_later(ctx, f"unexpected error: {exc}")
    _apply(services, ctx, flow, decision, time.monotonic() - started)


def _retry_later(ctx: StepContext, message: str) -> Nap:
    ctx.task.error = message
    delay = min(MAX_BACKOFF, 0.25 * 2 ** max(ctx.task.attempt - 1, 0))
    logger.warning(
        "task %s step %s will retry in %.2f s: %s", ctx.task.id, ctx.task.step, delay, message
    )
    return Nap(delay)


def _apply(
    services: Services, ctx: StepContext, flow: Workflow, decision: Decision, took: float
) -> None:
    task = ctx.task
    now = utcnow()
    task.lease_until = None
    task.lease_owner = None
    countdown: float | None = None
    if isinstance(decision, Nap):
        task.next_run_at = now + dt.timedelta(seconds=decision.seconds)
        countdown = decision.seconds
    elif decision is NEXT or isinstance(decision, Hop):
        label = decision.label if isinstance(decision, Hop) else flow.after(task.step)
        if label is None:
            decision = DONE
        else:
            logger.info("task %s step %s done in %.3f s, next %s", task.id, task.step, took, label)
            task.step = label
            task.step_started_at = now
            task.attempt = 0
            task.error = None
            task.next_run_at = now
            countdown = 0.0
    if decision is DONE:
        task.state = TaskState.COMPLETED.value
        task.finished_at = now
        task.duration = (now - task.created).total_seconds()
        task.error = None
        ctx.forget_secret()
        if flow.on_success is not None:
            flow.on_success(ctx)
        logger.info("task %s %s completed in %.3f s", task.id, flow.name, task.duration)
    ctx.session.commit()
    if countdown is not None:
        services.enqueue(task.id, countdown, task.request_id)


def _fail(ctx: StepContext, flow: Workflow, reason: str) -> None:
    task = ctx.task
    now = utcnow()
    task.state = TaskState.FAILED.value
    task.error = reason
    task.finished_at = now
    task.duration = (now - task.created).total_seconds()
    task.lease_until = None
    task.lease_owner = None
    ctx.forget_secret()
    if flow.on_failure is not None:
        flow.on_failure(ctx, reason)
    ctx.session.commit()
    logger.error("task %s %s failed at step %s: %s", task.id, flow.name, task.step, reason)


def reconcile(services: Services) -> int:
    """Enqueue every running task that is overdue and not leased; return how many."""
    now = utcnow()
    with services.db.session() as session:
        rows = session.execute(
            select(Task.id, Task.request_id)
            .where(
                Task.state == TaskState.RUNNING.value,
                Task.next_run_at < now - RECONCILE_GRACE,
                or_(Task.lease_until.is_(None), Task.lease_until < now),
            )
            .limit(200)
        ).all()
    for task_id, request_id in rows:
        logger.info("task %s is overdue; enqueueing it again", task_id)
        services.enqueue(task_id, 0.0, request_id)
    return len(rows)
