"""Every workflow the task manager runs, by name: the one registry the runner reads."""

from __future__ import annotations

from cellar.workflows import WorkflowName
from taskmanager.workflow import Workflow
from taskmanager.workflows import (
    access_rules,
    backup,
    configure,
    credentials,
    delete,
    detach,
    engine_logs,
    failover,
    provision,
    replication_mode,
    resize,
    resize_volume,
    restart,
    switchover,
    users,
    verify,
)

WORKFLOWS: dict[WorkflowName, Workflow] = {
    WorkflowName.PROVISION: provision.PROVISION,
    WorkflowName.PROVISION_RESTORE: provision.PROVISION_RESTORE,
    WorkflowName.PROVISION_REPLICA: provision.PROVISION_REPLICA,
    WorkflowName.DELETE: delete.DELETE,
    WorkflowName.RESTART: restart.RESTART,
    WorkflowName.RESIZE_FLAVOR: resize.RESIZE,
    WorkflowName.RESIZE_VOLUME: resize_volume.RESIZE_VOLUME,
    WorkflowName.APPLY_CONFIGURATION: configure.APPLY,
    WorkflowName.APPLY_ACCESS: access_rules.APPLY_ACCESS,
    WorkflowName.BACKUP: backup.BACKUP,
    WorkflowName.DELETE_BACKUP: backup.DELETE_BACKUP,
    WorkflowName.VERIFY_BACKUP: verify.VERIFY,
    WorkflowName.SWITCHOVER: switchover.SWITCHOVER,
    WorkflowName.FAILOVER: failover.FAILOVER,
    WorkflowName.DETACH: detach.DETACH,
    WorkflowName.REPLICATION_MODE: replication_mode.REPLICATION_MODE,
    WorkflowName.CREATE_DATABASES: users.CREATE_DATABASES,
    WorkflowName.DELETE_DATABASE: users.DELETE_DATABASE,
    WorkflowName.CREATE_USERS: users.CREATE_USERS,
    WorkflowName.DELETE_USER: users.DELETE_USER,
    WorkflowName.CHANGE_PASSWORDS: users.CHANGE_PASSWORDS,
    WorkflowName.GRANT_ACCESS: users.GRANT_ACCESS,
    WorkflowName.REVOKE_ACCESS: users.REVOKE_ACCESS,
    WorkflowName.ENABLE_ROOT: users.ENABLE_ROOT,
    WorkflowName.DISABLE_ROOT: users.DISABLE_ROOT,
    WorkflowName.PUBLISH_LOG: engine_logs.PUBLISH_LOG,
    WorkflowName.DISCARD_LOG: engine_logs.DISCARD_LOG,
    WorkflowName.ISSUE_CREDENTIAL: credentials.ISSUE_CREDENTIAL,
    WorkflowName.END_CREDENTIAL: credentials.END_CREDENTIAL,
}


def workflow_of(name: str) -> Workflow:
    """The workflow a task row names; KeyError for a name this release does not run."""
    return WORKFLOWS[WorkflowName(name)]
