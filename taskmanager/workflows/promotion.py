"""What switchover and failover share: the event they record, the change of primary in
the metadata, and re-pointing the other members at the new primary."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from cellar.errors import AgentError
from cellar.models import Instance, ReplicaSet, ReplicationEvent, utcnow
from cellar.status import InstanceStatus
from taskmanager import replica_sets
from taskmanager.context import StepContext
from taskmanager.workflow import StepFailed

logger = logging.getLogger(__name__)

PROMOTE_WAIT = 15.0  # seconds a candidate may take to catch up before it is promoted
CALL_TIMEOUT = 60.0


def the_set(ctx: StepContext) -> ReplicaSet:
    found = replica_sets.load_set(ctx.session, ctx.instance)
    if found is None:
        raise StepFailed(f"instance {ctx.instance.id} is not in a replica set any more")
    return found


def remember(ctx: StepContext, **values: Any) -> None:
    """Keep values in the task's params for later steps (a new dict, so it is saved)."""
    ctx.task.params = {**ctx.task.params, **values}


def event(ctx: StepContext, replica_set: ReplicaSet, kind: str, old: Instance) -> ReplicationEvent:
    """The task's event row, created by its first step."""
    event_id = ctx.task.params.get("event_id")
    if event_id:
        found = ctx.session.get(ReplicationEvent, event_id)
        if found is not None:
            return found
    detected = ctx.task.params.get("detected_at")
    row = ReplicationEvent(
        project_id=replica_set.project_id,
        set_id=replica_set.id,
        kind=kind,
        old_primary_id=old.id,
        detected_at=_parse(detected) if detected else None,
        started_at=utcnow(),
    )
    ctx.session.add(row)
    ctx.session.flush()
    remember(ctx, event_id=row.id)
    return row


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def current_event(ctx: StepContext) -> ReplicationEvent | None:
    event_id = ctx.task.params.get("event_id")
    return ctx.session.get(ReplicationEvent, event_id) if event_id else None


def make_primary(ctx: StepContext, replica_set: ReplicaSet, candidate: Instance) -> None:
    """Record ``candidate`` as the set's primary, every other member as its replica."""
    replica_set.primary_id = candidate.id
    replica_set.down_since = None
    for member in replica_sets.members(ctx.session, replica_set):
        member.replica_of_id = None if member.id == candidate.id else candidate.id
    found = current_event(ctx)
    if found is not None:
        found.new_primary_id = candidate.id
        found.promoted_at = utcnow()


def follow_new_primary(ctx: StepContext, replica_set: ReplicaSet) -> list[str]:
    """Point every replica at the set's primary; returns the ids that could not follow."""
    services = ctx.services
    head = replica_sets.primary(ctx.session, replica_set)
    replica_sets.enable_on_primary(services, ctx.session, replica_set)
    failed = []
    for member in replica_sets.replicas(ctx.session, replica_set):
        name = replica_sets.replica_name(member.id)
        source = replica_sets.source(services, replica_set, head, name)
        try:
            services.agent_for(member).follow(source, CALL_TIMEOUT)
        except (AgentError, LookupError) as exc:
            logger.warning("replica %s could not follow %s: %s", member.id, head.id, exc)
            failed.append(member.id)
    return failed


def finish(ctx: StepContext, replica_set: ReplicaSet, failed: list[str]) -> None:
    """Members back to ACTIVE (or ERROR when they could not follow); the event done."""
    for member in replica_sets.members(ctx.session, replica_set):
        if member.id in failed:
            member.status = InstanceStatus.ERROR.value
            member.fault = "could not follow the new primary after a change of primary"
            member.fault_at = utcnow()
        elif member.status in (InstanceStatus.PROMOTE.value, InstanceStatus.EJECT.value):
            member.status = InstanceStatus.ACTIVE.value
    found = current_event(ctx)
    if found is not None:
        found.state = "COMPLETED"
        found.finished_at = utcnow()
        if failed:
            found.detail = (found.detail + f" replicas that could not follow: {failed}").strip()


def fail_event(ctx: StepContext, reason: str) -> None:
    found = current_event(ctx)
    if found is not None and found.state == "RUNNING":
        found.state = "FAILED"
        found.finished_at = utcnow()
        found.detail = reason
