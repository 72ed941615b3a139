"""Applying a configuration group's parameters to one instance."""

from __future__ import annotations

from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, Workflow
from taskmanager.workflows.common import agent_call

APPLY_TIMEOUT = 60.0


def apply_values(ctx: StepContext) -> Decision:
    values = dict(ctx.task.params.get("values") or {})
    restart = agent_call(lambda: ctx.agent.apply_configuration(values, APPLY_TIMEOUT))
    instance = ctx.instance
    if restart:
        instance.status = InstanceStatus.RESTART_REQUIRED.value
    elif instance.status == InstanceStatus.RESTART_REQUIRED.value:
        instance.status = InstanceStatus.ACTIVE.value
    return NEXT


APPLY = Workflow(
    WorkflowName.APPLY_CONFIGURATION,
    (Step("apply_values", apply_values, 120, "applying the configuration parameters"),),
)
