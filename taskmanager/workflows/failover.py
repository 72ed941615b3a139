"""Failover (``eject_replica_source``, or the watcher's automatic one): the primary is down.

The replica that has received the most is chosen (with none answering, nothing is
touched); the old primary's container is stopped so it cannot take writes (fencing); the
chosen replica is promoted and the rw endpoint moves to it; the other replicas follow
it. The old primary leaves the set, stopped, with a fault saying why. The event records
how far behind its own source the promoted replica last was. The task runs on the old
primary and does not wait for that instance's other tasks (they may hang on the dead agent).
"""

from __future__ import annotations

import logging

from cellar.errors import AgentError, CellarError
from cellar.models import Instance, ReplicaSet, utcnow
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.agent_client import Replication
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows import promotion
from taskmanager.workflows.common import agent_call

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 3.0
CANDIDATES = (
    InstanceStatus.ACTIVE.value,
    InstanceStatus.RESTART_REQUIRED.value,
    InstanceStatus.EJECT.value,
)


def fence(ctx: StepContext) -> Decision:
    old = ctx.instance
    replica_set = _set_of_task(ctx)  # given by whoever started the failover
    if replica_set.primary_id != old.id:
        return NEXT  # promoted already (this step runs again after a crash)
    try:
        ctx.services.compute.stop_container(old.id)
    except CellarError as exc:
        raise StepFailed(f"cannot fence the old primary: {exc.message}") from exc
    promotion.remember(ctx, fenced=True)
    return NEXT


def _ask(ctx: StepContext, member: Instance) -> Replication | None:
    try:
        return ctx.services.agent_for(member).replication(timeout=ASK_TIMEOUT)
    except (AgentError, LookupError) as exc:
        logger.warning("replica %s does not answer: %s", member.id, exc)
        return None


def elect(ctx: StepContext) -> Decision:
    """Choose the replica to promote before anything is stopped: with none to promote,
    the primary is left as it is."""
    replica_set = _set_of_task(ctx)  # given by whoever started the failover
    if replica_set.primary_id != ctx.instance.id:
        return NEXT  # promoted already (this step runs again after a crash)
    promotion.event(ctx, replica_set, str(ctx.task.params.get("kind", "failover")), ctx.instance)
    best: tuple[Instance, Replication] | None = None
    for member in replica_sets.replicas(ctx.session, replica_set):
        if member.status not in CANDIDATES:
            continue
        state = _ask(ctx, member)
        if state is not None and (best is None or state.position_value > best[1].position_value):
            best = (member, state)
    if best is None:
        raise StepFailed("no replica answers: there is nothing to promote")
    member, state = best
    promotion.remember(ctx, candidate_id=member.id, candidate_position=state.position_value)
    found = promotion.current_event(ctx)
    if found is not None:
        found.behind_bytes = state.lag_bytes if state.lag_bytes >= 0 else None
        found.behind_seconds = state.lag_seconds if state.lag_seconds >= 0 else None
        found.detail = f"promoted at position {state.position}"
    return NEXT


def promote(ctx: StepContext) -> Decision:
    old = ctx.instance
    replica_set = _set_of_task(ctx)
    if replica_set.primary_id == old.id:
        candidate = ctx.session.get(Instance, str(ctx.task.params.get("candidate_id")))
        if candidate is None or candidate.deleted_at is not None:
            raise StepFailed("the chosen replica was deleted")
        state = _promote(ctx, candidate, int(ctx.task.params.get("candidate_position", 0)))
        if not state.writable:
            raise StepFailed(f"replica {candidate.id} did not become writable")
        promotion.make_primary(ctx, replica_set, candidate)
        old.replica_set_id = None
        old.replica_of_id = None
        old.replication = None
        old.status = InstanceStatus.SHUTDOWN.value
        old.fault = f"stopped by a failover: replica {candidate.id} took over as the primary"
        old.fault_at = utcnow()
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)
    return NEXT


def _promote(ctx: StepContext, candidate: Instance, received: int) -> Replication:
    """Promote after applying what the candidate received; at once if that fails."""
    agent = ctx.services.agent_for(candidate)
    try:
        return agent.promote(received, promotion.PROMOTE_WAIT, promotion.CALL_TIMEOUT)
    except AgentError as exc:
        if exc.retryable:
            raise
        logger.warning("replica %s did not apply all it received: %s", candidate.id, exc)
    return agent_call(lambda: agent.promote(0, 1.0, promotion.CALL_TIMEOUT))


def _set_of_task(ctx: StepContext) -> ReplicaSet:
    found = ctx.session.get(ReplicaSet, str(ctx.task.params.get("set_id")))
    if found is None:
        raise StepFailed("the replica set is gone")
    return found


def follow(ctx: StepContext) -> Decision:
    failed = promotion.follow_new_primary(ctx, _set_of_task(ctx))
    promotion.remember(ctx, not_following=failed)
    return NEXT


def finish(ctx: StepContext) -> Decision:
    replica_set = _set_of_task(ctx)
    promotion.finish(ctx, replica_set, list(ctx.task.params.get("not_following", [])))
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    """A primary that was not stopped stays as it was; a stopped one is in ERROR. The
    event is recorded either way."""
    old = ctx.instance
    replica_set = ctx.session.get(ReplicaSet, str(ctx.task.params.get("set_id")))
    if promotion.current_event(ctx) is None and replica_set is not None:
        promotion.event(ctx, replica_set, str(ctx.task.params.get("kind", "failover")), old)
    promotion.fail_event(ctx, reason)
    if old.status == InstanceStatus.EJECT.value:
        fenced = bool(ctx.task.params.get("fenced"))
        old.status = InstanceStatus.ERROR.value if fenced else InstanceStatus.ACTIVE.value
    old.fault = f"failover failed: {reason}"
    old.fault_at = utcnow()


FAILOVER = Workflow(
    WorkflowName.FAILOVER,
    (
        Step("elect", elect, 30, "choosing the replica that has received the most"),
        Step("fence", fence, 60, "stopping the old primary's container"),
        Step("promote", promote, 90, "promoting it and moving the rw endpoint"),
        Step("follow", follow, 300, "pointing the other replicas at the new primary"),
        Step("finish", finish, 60, "putting the set back in service"),
    ),
    on_failure=_failed,
    waits_for_earlier=False,
)
