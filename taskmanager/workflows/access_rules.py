"""Applying an instance's network access and TLS policy after the API changed them.

The API stores the new access on the row; this step makes the firewall (and the TLS
policy file the agent watches) follow the row,
so a later change, or the beat's reconcile, always converges on the latest.
"""

from __future__ import annotations

from cellar import pki
from cellar.models import utcnow
from cellar.workflows import WorkflowName
from taskmanager import certificates, network_access
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, Workflow


def apply_rules(ctx: StepContext) -> Decision:
    instance = ctx.instance
    settings = ctx.services.settings
    if instance.port is not None:  # provisioned: its engine follows a new TLS policy
        authority = pki.Authority.from_home(settings.home)
        certificates.ensure(authority, settings, instance.id, instance.tls_required)
    network_access.apply(ctx.services, instance)
    return NEXT


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    instance.fault = f"the network access rules could not be applied: {reason}"
    instance.fault_at = utcnow()


APPLY_ACCESS = Workflow(
    WorkflowName.APPLY_ACCESS,
    (Step("apply_rules", apply_rules, 60, "applying the network access rules"),),
    on_failure=_failed,
)
