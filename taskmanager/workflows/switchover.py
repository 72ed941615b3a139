"""Switchover (``promote_to_replica_source``): a replica becomes the primary, losing nothing.

The old primary stops taking writes first and says its final position; the candidate
catches up to it and is promoted; the rw endpoint moves at once; then every other member,
the old primary included, follows the new primary. The task runs on the candidate.
"""

from __future__ import annotations

from cellar.errors import AgentError
from cellar.models import utcnow
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows import promotion
from taskmanager.workflows.common import agent_call


def stop_writes(ctx: StepContext) -> Decision:
    replica_set = promotion.the_set(ctx)
    if replica_set.primary_id == ctx.instance.id:
        return NEXT  # promoted already (this step runs again after a crash)
    old = replica_sets.primary(ctx.session, replica_set)
    promotion.event(ctx, replica_set, "switchover", old)
    state = agent_call(lambda: ctx.services.agent_for(old).stop_writes(promotion.CALL_TIMEOUT))
    promotion.remember(ctx, position=state.position_value, old_primary_id=old.id)
    return NEXT


def promote(ctx: StepContext) -> Decision:
    replica_set = promotion.the_set(ctx)
    candidate = ctx.instance
    if replica_set.primary_id != candidate.id:
        position = int(ctx.task.params.get("position", 0))
        state = agent_call(
            lambda: ctx.agent.promote(position, promotion.PROMOTE_WAIT, promotion.CALL_TIMEOUT)
        )
        if not state.writable:
            raise StepFailed("the candidate did not become writable")
        promotion.make_primary(ctx, replica_set, candidate)
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)
    return NEXT


def follow(ctx: StepContext) -> Decision:
    replica_set = promotion.the_set(ctx)
    failed = promotion.follow_new_primary(ctx, replica_set)
    promotion.remember(ctx, not_following=failed)
    return NEXT


def finish(ctx: StepContext) -> Decision:
    replica_set = promotion.the_set(ctx)
    promotion.finish(ctx, replica_set, list(ctx.task.params.get("not_following", [])))
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    """Before the promotion, give the old primary its writes back; after, keep going.
    The event is recorded either way."""
    replica_set = replica_sets.load_set(ctx.session, ctx.instance)
    if replica_set is None:
        promotion.fail_event(ctx, reason)
        return
    if replica_set.primary_id != ctx.instance.id:
        old = replica_sets.primary(ctx.session, replica_set)
        if promotion.current_event(ctx) is None:
            promotion.event(ctx, replica_set, "switchover", old)
        promotion.fail_event(ctx, reason)
        try:  # started again if it was stopped, then writable again (read_only, pauses)
            agent = ctx.services.agent_for(old)
            agent.restart(promotion.CALL_TIMEOUT)
            agent.promote(0, 1.0, promotion.CALL_TIMEOUT)
        except AgentError as exc:
            reason += f"; the old primary did not take writes again: {exc.message}"
    else:
        promotion.fail_event(ctx, reason)
    for member in replica_sets.members(ctx.session, replica_set):
        if member.status == InstanceStatus.PROMOTE.value:
            member.status = InstanceStatus.ACTIVE.value
    ctx.instance.fault = f"switchover failed: {reason}"
    ctx.instance.fault_at = utcnow()


SWITCHOVER = Workflow(
    WorkflowName.SWITCHOVER,
    (
        Step("stop_writes", stop_writes, 60, "stopping writes on the old primary"),
        Step("promote", promote, 90, "catching up and promoting the replica"),
        Step("follow", follow, 300, "pointing the other members at the new primary"),
        Step("finish", finish, 60, "putting the set back in service"),
    ),
    on_failure=_failed,
)
