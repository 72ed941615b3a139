"""The steps provisioning adds for a replica: seed it from its primary, then join the set.

``seed_replica`` lets the new replica in at the primary and streams a fresh physical
backup of the primary straight into the new instance's agent (engines whose replicas copy
themselves, Redis, skip the copy: their first full sync is the seed). ``prepare`` then
starts the engine as a read-only replica (``replica_source``), and ``join_replica_set``
makes the primary wait for it in synchronous sets and puts it behind the ro endpoint.
Every step does nothing for an instance that is not a replica.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlalchemy import select

from cellar import catalog
from cellar.errors import AgentError
from cellar.models import Instance, ReplicaSet, Task
from cellar.status import InstanceStatus, TaskState
from cellar.tasks import NOT_BEGUN
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.agent_client import BackupEnd, Source
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Nap, StepFailed
from taskmanager.workflows.common import agent_call, mark_active

logger = logging.getLogger(__name__)


def is_replica(ctx: StepContext) -> bool:
    return bool(ctx.task.params.get("replica"))


def _set_and_primary(ctx: StepContext) -> tuple[ReplicaSet, Instance]:
    replica_set = replica_sets.load_set(ctx.session, ctx.instance)
    if replica_set is None:
        raise StepFailed("the replica set of this instance no longer exists")
    head = replica_sets.primary(ctx.session, replica_set)
    if head.deleted_at is not None or head.status == InstanceStatus.ERROR.value:
        raise StepFailed(f"the primary {head.id} is {head.status}; cannot copy it")
    return replica_set, head


def _earlier_seed(ctx: StepContext, replica_set: ReplicaSet) -> str | None:
    """A replica of the same set, asked for before this one, that is not seeded yet: the
    primary makes one copy at a time."""
    before_seeded = (NOT_BEGUN, "start_instance", "seed_replica")
    members = [m.id for m in replica_sets.members(ctx.session, replica_set)]
    return ctx.session.scalars(
        select(Task.instance_id).where(
            Task.workflow == WorkflowName.PROVISION_REPLICA,
            Task.state == TaskState.RUNNING.value,
            Task.instance_id.in_(members),
            Task.id != ctx.task.id,
            Task.created < ctx.task.created,
            Task.step.in_(before_seeded),
        )
    ).first()


def seed_replica(ctx: StepContext) -> Decision:
    if not is_replica(ctx):
        return NEXT
    instance = ctx.instance
    replica_set, head = _set_and_primary(ctx)
    earlier = _earlier_seed(ctx, replica_set)
    if earlier is not None:
        logger.info("replica %s waits for replica %s to be copied first", instance.id, earlier)
        return Nap(0.5)
    agent_call(lambda: replica_sets.enable_on_primary(ctx.services, ctx.session, replica_set))
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None or version.replicas_copy_themselves:
        return NEXT
    deadline = ctx.services.settings.backup_deadline
    ctx.session.commit()  # nothing pending while the bytes flow; the lease is kept apart
    pieces = ctx.services.agent_for(head).backup(f"seed-{instance.id}", "full", "", deadline)

    failures: list[AgentError] = []

    def data() -> Iterator[bytes]:
        try:
            for piece in pieces:
                ctx.keep_lease()
                if not isinstance(piece, BackupEnd):
                    yield piece
        except AgentError as exc:  # gRPC only says "exception iterating requests"
            failures.append(exc)
            raise

    try:
        received = ctx.agent.restore("full", 0, version.backup_format, data(), deadline)
    except AgentError as exc:
        cause = failures[0] if failures else exc
        if cause.retryable:
            raise cause from exc
        side = "backing up the primary" if failures else "restoring into the replica"
        raise StepFailed(f"copying the primary {head.id} failed {side}: {cause.message}") from exc
    logger.info("seeded replica %s from %s: %d bytes", instance.id, head.id, received)
    return NEXT


def replica_source(ctx: StepContext) -> Source | None:
    """For ``prepare``: the primary a replica starts following (None for other instances)."""
    if not is_replica(ctx):
        return None
    replica_set, head = _set_and_primary(ctx)
    name = replica_sets.replica_name(ctx.instance.id)
    return replica_sets.source(ctx.services, replica_set, head, name)


def restored_by_seed(ctx: StepContext) -> bool:
    instance = ctx.instance
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    return is_replica(ctx) and version is not None and not version.replicas_copy_themselves


def join_replica_set(ctx: StepContext) -> Decision:
    """Let the replica in at its primary and behind the ro endpoint, then mark it ACTIVE:
    in the same commit, so an ACTIVE replica always has its endpoints."""
    if not is_replica(ctx):
        mark_active(ctx.instance)
        return NEXT
    replica_set, _head = _set_and_primary(ctx)
    mark_active(ctx.instance)  # from now on it counts among the serving replicas: a sync
    # primary waits for it, and the ro endpoint leads to it
    agent_call(lambda: replica_sets.enable_on_primary(ctx.services, ctx.session, replica_set))
    replica_sets.refresh_endpoints(ctx.services, ctx.session, replica_set)
    return NEXT
