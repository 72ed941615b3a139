"""Backup verification: restore into a hidden scratch instance, run the engine's checker.

The scratch instance goes through the same steps as a restore, then the engine's own
consistency checker runs, the result is recorded on the backup, and the scratch is
removed, also when a step fails.
"""

from __future__ import annotations

import logging
import time

from cellar.errors import AgentError
from cellar.models import Backup, Instance, utcnow
from cellar.workflows import WorkflowName
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, Workflow
from taskmanager.workflows import delete, provision
from taskmanager.workflows.backup import load_backup
from taskmanager.workflows.restore import check_backups, restore_data

logger = logging.getLogger(__name__)


def check_consistency(ctx: StepContext) -> Decision:
    backup = load_backup(ctx, ctx.task.params["backup_id"])
    try:
        ok, detail = ctx.agent.check_consistency(ctx.services.settings.backup_deadline)
    except AgentError as exc:
        if exc.retryable:
            raise
        ok, detail = False, exc.message
    _record(ctx, backup, ok, detail)
    return NEXT


def _record(ctx: StepContext, backup: Backup, ok: bool, detail: str) -> None:
    backup.verified_at = utcnow()
    backup.verify_ok = ok
    backup.verify_detail = detail[:2000]
    backup.verify_seconds = round(time.time() - float(ctx.task.params["started"]), 3)
    logger.info("backup %s verified: %s (%s)", backup.id, "ok" if ok else "FAILED", detail)


def _verify_failed(ctx: StepContext, reason: str) -> None:
    backup = ctx.session.get(Backup, ctx.task.params["backup_id"])
    if backup is not None and backup.deleted_at is None:
        _record(ctx, backup, False, reason)
    scratch = ctx.session.get(Instance, ctx.task.instance_id)
    compute = ctx.services.compute
    for remove in (compute.remove_container, compute.remove_volume):
        try:
            remove(ctx.task.instance_id or "")
        except Exception:  # the failure being recorded matters more; beat retries nothing here
            logger.exception("could not remove the scratch instance %s", ctx.task.instance_id)
    if scratch is not None:
        scratch.deleted_at = utcnow()


VERIFY = Workflow(
    WorkflowName.VERIFY_BACKUP,
        (
            Step("check_backups", check_backups, "backup_deadline", "checking the stored backup"),
            Step("create_volume", provision.create_volume, 60, "creating a scratch volume"),
            Step("start_container", provision.start_container, 120, "starting a scratch instance"),
            Step("wait_for_agent", provision.wait_for_agent, "build_deadline",
                 "waiting for the scratch instance's agent"),
            Step("restore_data", restore_data, "backup_deadline", "restoring the backup"),
            Step("prepare", provision.prepare, "build_deadline", "starting the restored engine"),
            Step("check_consistency", check_consistency, "backup_deadline",
                 "running the engine's consistency checker"),
            Step("remove_container", delete.remove_container, "delete_deadline",
                 "removing the scratch instance"),
            Step("remove_volume", delete.remove_volume, "delete_deadline",
                 "removing the scratch volume"),
            Step("remove_network", delete.remove_network, 60, "removing the project network"),
            Step("mark_deleted", delete.mark_deleted, 30, "forgetting the scratch instance"),
        ),
        on_failure=_verify_failed,
)  # fmt: skip
