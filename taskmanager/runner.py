"""Runs one step of a task under a lease, and persists the step's decision.

``run_step`` is what the Celery task calls. It takes the task's lease (see
``taskmanager.lease``), runs the current step while the worker's heartbeat keeps that
lease, and commits the step's decision together with what the step changed, fenced:
a worker that lost the lease meanwhile writes nothing and abandons the step.
``reconcile`` (run by beat) puts back on the queue any task whose message was lost,
for instance with a killed worker, as soon as its lease is free.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cellar import logs
from cellar.errors import CellarError
from cellar.models import Task, utcnow
from cellar.status import TaskState
from cellar.tasks import NOT_BEGUN
from taskmanager import faults
from taskmanager.context import Services, StepContext
from taskmanager.lease import LeaseLost, acquire, dead_workers, free
from taskmanager.workflow import DONE, NEXT, Decision, Hop, Nap, StepFailed, Workflow
from taskmanager.workflows import workflow_of

logger = logging.getLogger(__name__)

RECONCILE_GRACE = dt.timedelta(seconds=5)
MAX_BACKOFF = 5.0
QUEUED_NAP = 0.2
DEADLINE_SLACK = dt.timedelta(seconds=5)  # a lease is kept this long past its step's deadline


def run_step(services: Services, task_id: str) -> None:
    """Run the current step of ``task_id`` if it is due and nobody alive holds it."""
    settings = services.settings
    lease = acquire(
        services.db, task_id, services.heartbeat.worker_id, settings.step_lease,
        settings.worker_stale,
    )  # fmt: skip
    if lease is None:
        logger.debug("task %s is not due or is held elsewhere", task_id)
        return
    session = services.db.new_session()
    lease.guard(session)
    try:
        task = session.get(Task, task_id)
        if task is None:
            return
        with logs.bound_request_id(task.request_id):
            _run_held(services, StepContext(services, session, task, lease))
    except LeaseLost as exc:
        session.rollback()
        lease.release(services.db)
        logger.warning("%s; the step was abandoned and wrote nothing", exc)
    finally:
        session.close()


def _run_held(services: Services, ctx: StepContext) -> None:
    task, flow = ctx.task, workflow_of(ctx.task.workflow)
    if task.step == NOT_BEGUN:  # recorded at once: the step's transaction starts clean
        enter(task, flow, flow.first, utcnow())
        ctx.session.commit()
    step = flow.step(task.step)
    deadline = step.deadline_in(services.settings)
    until = task.step_started_at + dt.timedelta(seconds=deadline) + DEADLINE_SLACK
    with services.heartbeat.hold(ctx.lease, until):
        if _behind_earlier_task(ctx.session, task, flow):
            _apply(services, ctx, flow, Nap(QUEUED_NAP), 0.0)
            return
        _run_leased(services, ctx, flow)


def enter(task: Task, flow: Workflow, label: str, now: dt.datetime) -> None:
    """Put ``task`` at the start of its step ``label``, with the progress a view shows."""
    task.step = label
    task.step_started_at = now
    task.step_number = flow.position(label)
    task.step_count = len(flow.steps)
    task.description = flow.step(label).describe


def _behind_earlier_task(session: Session, task: Task, flow: Workflow) -> bool:
    """True while an earlier task of the same instance still runs (tasks go in order)."""
    if task.instance_id is None or not flow.waits_for_earlier:
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


def _run_leased(services: Services, ctx: StepContext, flow: Workflow) -> None:
    task = ctx.task
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
    ctx.last_step = flow.after(step.label) is None
    faults.before_step(flow.name, step.label)
    try:
        with faults.during_step(flow.name, step.label) as ctx.fault:
            decision: Decision = step.run(ctx)
    except Exception as exc:
        ctx.session.rollback()
        if isinstance(exc, LeaseLost) or ctx.lease.lost:
            raise LeaseLost(f"task {task.id}: the lease was lost during step {step.label}") from exc
        if isinstance(exc, StepFailed):
            _fail(ctx, flow, str(exc))
            return
        if isinstance(exc, CellarError | LookupError):
            decision = _retry_later(ctx, str(exc))
        else:
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
    ctx.fence()
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
            enter(task, flow, label, now)
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
    for started in ctx.started:
        services.enqueue(started.id, 0.0, started.request_id)


def _fail(ctx: StepContext, flow: Workflow, reason: str) -> None:
    """End the task FAILED; its workflow's ``on_failure`` runs only while the lease holds
    (the task row stays locked from that check to the commit)."""
    task = ctx.task
    ctx.fence()
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
    """Enqueue every running task that is overdue and whose lease is free, and every task
    whose worker died (its step is due again at once); return how many."""
    now = utcnow()
    stale = services.settings.worker_stale
    with services.db.session() as session:
        rows = session.execute(
            select(Task.id, Task.request_id)
            .where(
                Task.state == TaskState.RUNNING.value,
                or_(
                    (Task.next_run_at < now - RECONCILE_GRACE) & free(now, stale),
                    Task.lease_owner.in_(dead_workers(now, stale)),
                ),
            )
            .limit(200)
        ).all()
    for task_id, request_id in rows:
        logger.info("task %s is overdue or its worker died; enqueueing it again", task_id)
        services.enqueue(task_id, 0.0, request_id)
    return len(rows)
