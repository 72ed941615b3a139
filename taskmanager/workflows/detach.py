"""Leaving a replica set: detaching a replica into a standalone instance, or deleting a
member. The primary forgets the replica (its slot goes) and the endpoints follow; a
primary deleted with no replica left takes the set and its endpoints with it."""

from __future__ import annotations

import logging

from cellar.errors import CellarError
from cellar.models import Instance, ReplicaSet, utcnow
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows import promotion
from taskmanager.workflows.common import agent_call

logger = logging.getLogger(__name__)


def _leave(member: Instance) -> None:
    member.replica_set_id = None
    member.replica_of_id = None
    member.replication = None


def release(ctx: StepContext, replica_set: ReplicaSet) -> None:
    """After a replica left: the primary drops what it kept for it, endpoints follow."""
    try:
        replica_sets.enable_on_primary(ctx.services, ctx.session, replica_set)
    except (CellarError, LookupError) as exc:
        logger.warning("the primary of set %s kept the replica's state: %s", replica_set.id, exc)
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)


def dissolve(ctx: StepContext, replica_set: ReplicaSet) -> None:
    ctx.services.endpoints.remove(replica_set.id)
    for member in replica_sets.members(ctx.session, replica_set):
        _leave(member)
    replica_set.deleted_at = utcnow()


def leave_replica_set(ctx: StepContext) -> Decision:
    """Delete's step: take the instance out of its set (its container is gone already)."""
    instance = ctx.instance
    replica_set = replica_sets.load_set(ctx.session, instance)
    if replica_set is None:
        return NEXT
    if replica_set.primary_id == instance.id:
        dissolve(ctx, replica_set)
        return NEXT
    _leave(instance)
    ctx.session.flush()
    release(ctx, replica_set)
    return NEXT


def detach(ctx: StepContext) -> Decision:
    instance = ctx.instance
    replica_set = replica_sets.load_set(ctx.session, instance)
    if replica_set is not None:
        promotion.remember(ctx, set_id=replica_set.id)
        state = agent_call(lambda: ctx.agent.promote(0, 1.0, promotion.CALL_TIMEOUT))
        if not state.writable:
            raise StepFailed("the replica did not become writable")
        _leave(instance)
    return NEXT


def release_set(ctx: StepContext) -> Decision:
    replica_set = ctx.session.get(ReplicaSet, str(ctx.task.params.get("set_id", "")))
    if replica_set is not None and replica_set.deleted_at is None:
        release(ctx, replica_set)
    instance = ctx.instance
    instance.status = InstanceStatus.ACTIVE.value
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    if instance.status == InstanceStatus.DETACH.value:
        instance.status = InstanceStatus.ACTIVE.value
    instance.fault = f"detach failed: {reason}"
    instance.fault_at = utcnow()


DETACH = Workflow(
    WorkflowName.DETACH,
    (
        Step("detach", detach, 90, "stopping replication: the replica becomes writable"),
        Step("release_set", release_set, 60, "letting the primary and endpoints forget it"),
    ),
    on_failure=_failed,
)
