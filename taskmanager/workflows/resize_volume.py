"""Volume resize: the instance's file system grows to a larger size, its data kept.

The image file grows first, then the file system: online while the engine runs
when the kernel allows it; otherwise the container is stopped, the file system
grown unmounted and the container started again. A failure leaves the data as
it was and the instance ACTIVE at its old size, the task FAILED with the reason.
"""

from __future__ import annotations

import logging

from cellar.errors import CellarError, ComputeError
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.drivers.volumes import OnlineResizeRefused, VolumeBusy
from taskmanager.workflow import NEXT, Decision, Hop, Nap, Step, StepFailed, Workflow
from taskmanager.workflows.common import agent_call

logger = logging.getLogger(__name__)

USAGE_TIMEOUT = 5.0


def _size(ctx: StepContext) -> int:
    return int(ctx.task.params["size"])


def grow_online(ctx: StepContext) -> Decision:
    try:
        ctx.services.compute.grow_volume(ctx.instance.id, _size(ctx))
    except OnlineResizeRefused as exc:
        logger.info("growing the mounted file system was refused (%s): growing it offline", exc)
        return NEXT
    except ComputeError as exc:
        raise StepFailed(exc.message) from exc
    return Hop("mark_resized")


def stop_container(ctx: StepContext) -> Decision:
    if not ctx.services.compute.stop_container(ctx.instance.id):
        raise StepFailed("the instance's container is gone")
    return NEXT


def grow_offline(ctx: StepContext) -> Decision:
    try:
        ctx.services.compute.grow_volume(ctx.instance.id, _size(ctx), offline=True)
    except VolumeBusy as exc:  # the stopped container's mounts are still being released
        logger.info("waiting to grow the volume of %s: %s", ctx.instance.id, exc.message)
        return Nap(0.5)
    except ComputeError as exc:
        raise StepFailed(exc.message) from exc
    return NEXT


def start_container(ctx: StepContext) -> Decision:
    if not ctx.services.compute.start_container(ctx.instance.id):
        raise StepFailed("the instance's container is gone")
    return NEXT


def wait_for_engine(ctx: StepContext) -> Decision:
    if not ctx.agent.is_serving(timeout=0.5):
        return Nap(0.2)
    state, detail = agent_call(lambda: ctx.agent.status(timeout=USAGE_TIMEOUT))
    if state == "HEALTHY":
        return NEXT
    if state == "FAILED":
        raise StepFailed(f"the engine did not come back: {detail}")
    return Nap(0.5)


def mark_resized(ctx: StepContext) -> Decision:
    instance = ctx.instance
    instance.volume_size = _size(ctx)
    instance.status = InstanceStatus.ACTIVE.value
    try:
        report = ctx.agent.status_report(timeout=USAGE_TIMEOUT)
    except (CellarError, LookupError) as exc:
        logger.info("volume usage of %s not refreshed: %s", instance.id, exc)
    else:
        if report.volume_total_bytes > 0:
            instance.volume_used_bytes = report.volume_used_bytes
            instance.volume_total_bytes = report.volume_total_bytes
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    if instance.status != InstanceStatus.RESIZE.value:
        return
    instance.status = InstanceStatus.ACTIVE.value
    try:  # after a failed offline step: the volume mounted and the container running again
        ctx.services.compute.start_container(instance.id)
    except CellarError as exc:
        logger.warning("instance %s not started again: %s", instance.id, exc.message)


RESIZE_VOLUME = Workflow(
    WorkflowName.RESIZE_VOLUME,
    (
        Step("grow_online", grow_online, 120, "growing the volume"),
        Step("stop_container", stop_container, 120, "stopping the engine to grow its volume"),
        Step("grow_offline", grow_offline, 300, "growing the unmounted volume"),
        Step("start_container", start_container, 120, "starting the engine again"),
        Step("wait_for_engine", wait_for_engine, 180, "waiting for the engine"),
        Step("mark_resized", mark_resized, 30, "recording the new volume size"),
    ),
    on_failure=_failed,
)
