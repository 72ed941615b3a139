"""Restart: the engine stops and starts inside its container, keeping data and address."""

from __future__ import annotations

from cellar.models import utcnow
from cellar.status import InstanceStatus, OperatingStatus
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Nap, Step, StepFailed, Workflow
from taskmanager.workflows.common import agent_call

RESTART_TIMEOUT = 120.0


def start_container(ctx: StepContext) -> Decision:
    """Start the container if it is stopped (after a host restart), its volume mounted first."""
    if not ctx.services.compute.start_container(ctx.instance.id):
        raise StepFailed("the instance's container is gone")
    return NEXT


def restart_engine(ctx: StepContext) -> Decision:
    state = agent_call(lambda: ctx.agent.restart(RESTART_TIMEOUT))
    if state == "HEALTHY":
        return NEXT
    if state == "FAILED":
        _state, detail = agent_call(ctx.agent.status)
        raise StepFailed(f"the engine did not come back: {detail}")
    return Nap(0.5)


def mark_active(ctx: StepContext) -> Decision:
    instance = ctx.instance
    instance.status = InstanceStatus.ACTIVE.value
    instance.operating_status = OperatingStatus.HEALTHY.value
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    if instance.status == InstanceStatus.REBOOT.value:
        instance.status = InstanceStatus.ERROR.value
        instance.fault = f"restart failed: {reason}"
        instance.fault_at = utcnow()


RESTART = Workflow(
    WorkflowName.RESTART,
    (
        Step("start_container", start_container, 120, "starting the container if stopped"),
        Step("restart_engine", restart_engine, 180, "restarting the database engine"),
        Step("mark_active", mark_active, 30, "marking the instance active"),
    ),
    on_failure=_failed,
)
