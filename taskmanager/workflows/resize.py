"""Flavor resize: new memory and CPU limits, live, and the engine's settings that follow them.

When memory shrinks the engine is told first, so it never runs with settings
larger than its container allows; when it grows the container grows first.
"""

from __future__ import annotations

from cellar import catalog
from cellar.models import utcnow
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, Workflow
from taskmanager.workflows.common import agent_call

RESIZE_TIMEOUT = 120.0


def _flavors(ctx: StepContext) -> tuple[catalog.Flavor, catalog.Flavor]:
    return catalog.FLAVORS[ctx.instance.flavor_id], catalog.FLAVORS[ctx.task.params["flavor_id"]]


def _reconfigure(ctx: StepContext, memory_mb: int) -> None:
    agent_call(lambda: ctx.agent.resize(memory_mb, RESIZE_TIMEOUT))


def shrink_settings(ctx: StepContext) -> Decision:
    old, new = _flavors(ctx)
    if new.ram_mb < old.ram_mb:
        _reconfigure(ctx, new.ram_mb)
    return NEXT


def update_limits(ctx: StepContext) -> Decision:
    _old, new = _flavors(ctx)
    ctx.services.compute.update_limits(ctx.instance.id, new.ram_mb, new.vcpus)
    return NEXT


def apply_settings(ctx: StepContext) -> Decision:
    _old, new = _flavors(ctx)
    _reconfigure(ctx, new.ram_mb)  # a no-op when shrink_settings already did it
    return NEXT


def mark_resized(ctx: StepContext) -> Decision:
    instance = ctx.instance
    instance.flavor_id = ctx.task.params["flavor_id"]
    instance.status = InstanceStatus.ACTIVE.value
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    if instance.status == InstanceStatus.RESIZE.value:
        instance.status = InstanceStatus.ERROR.value
        instance.fault = f"resize failed: {reason}"
        instance.fault_at = utcnow()


RESIZE = Workflow(
    WorkflowName.RESIZE_FLAVOR,
    (
        Step("shrink_settings", shrink_settings, 180, "lowering the engine's memory settings"),
        Step("update_limits", update_limits, 60, "changing the container's limits"),
        Step("apply_settings", apply_settings, 180, "applying the engine's memory settings"),
        Step("mark_resized", mark_resized, 30, "recording the new flavor"),
    ),
    on_failure=_failed,
)
