"""Deletion: stop whatever else runs on the instance, then remove all it owned."""

from __future__ import annotations

import logging
import shutil

from sqlalchemy import select

from cellar import pki
from cellar.errors import ComputeError
from cellar.models import Secret, Task, utcnow
from cellar.status import InstanceStatus, TaskState
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Nap, Step, Workflow
from taskmanager.workflows import backup, detach

logger = logging.getLogger(__name__)


def stop_other_tasks(ctx: StepContext) -> Decision:
    """Cancel the instance's other tasks and wait until none of them is mid-step."""
    others = ctx.session.scalars(
        select(Task).where(
            Task.instance_id == ctx.task.instance_id,
            Task.id != ctx.task.id,
            Task.state == TaskState.RUNNING.value,
        )
    ).all()
    now = utcnow()
    busy = False
    for other in others:
        other.state = TaskState.CANCELLED.value
        other.error = "cancelled: the instance is being deleted"
        other.finished_at = now
        backup.abandon(ctx.session, other, "the instance was deleted during the backup")
        secret = ctx.session.get(Secret, other.id)
        if secret is not None:
            ctx.session.delete(secret)
        if other.lease_until is not None and other.lease_until > now:
            busy = True
    held = ctx.session.scalars(
        select(Task.id).where(
            Task.instance_id == ctx.task.instance_id,
            Task.id != ctx.task.id,
            Task.lease_until > now,
        )
    ).first()
    if busy or held is not None:
        logger.info("waiting for a running step of instance %s to end", ctx.task.instance_id)
        return Nap(0.2)
    return NEXT


def remove_container(ctx: StepContext) -> Decision:
    ctx.services.compute.remove_container(ctx.instance.id)
    ctx.services.firewall.remove(ctx.instance.id)  # after: its port is closed by now
    shutil.rmtree(pki.agent_folder(ctx.services.settings.home, ctx.instance.id), ignore_errors=True)
    return NEXT


def remove_volume(ctx: StepContext) -> Decision:
    ctx.services.compute.remove_volume(ctx.instance.id)
    return NEXT


def remove_network(ctx: StepContext) -> Decision:
    try:
        ctx.services.compute.remove_network_if_unused(ctx.instance.project_id)
    except ComputeError as exc:
        logger.info("project network kept: %s", exc.message)
    return NEXT


def mark_deleted(ctx: StepContext) -> Decision:
    instance = ctx.instance
    instance.status = InstanceStatus.SHUTDOWN.value
    instance.deleted_at = utcnow()
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    instance.status = InstanceStatus.ERROR.value
    instance.fault = f"delete failed: {reason}"
    instance.fault_at = utcnow()


DELETE = Workflow(
    WorkflowName.DELETE,
    (
        Step("stop_other_tasks", stop_other_tasks, 120, "stopping the instance's other tasks"),
        Step("remove_container", remove_container, "delete_deadline", "removing the container"),
        Step(
            "leave_replica_set",
            detach.leave_replica_set,
            60,
            "taking the instance out of its replica set",
        ),
        Step("remove_volume", remove_volume, "delete_deadline", "removing the data volume"),
        Step("remove_network", remove_network, 60, "removing the project network"),
        Step("mark_deleted", mark_deleted, 30, "marking the instance deleted"),
    ),
    on_failure=_failed,
    waits_for_earlier=False,
)
