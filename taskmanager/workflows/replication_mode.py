"""A new replication mode for a set: the primary starts (or stops) waiting for a replica."""

from __future__ import annotations

from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows.common import agent_call


def apply_mode(ctx: StepContext) -> Decision:
    replica_set = replica_sets.load_set(ctx.session, ctx.instance)
    if replica_set is None:
        raise StepFailed("the instance is no longer in a replica set")
    agent_call(lambda: replica_sets.enable_on_primary(ctx.services, ctx.session, replica_set))
    return NEXT


REPLICATION_MODE = Workflow(
    WorkflowName.REPLICATION_MODE,
    (Step("apply_mode", apply_mode, 60, "applying the set's replication mode"),),
)
