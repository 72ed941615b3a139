"""The names of the workflows the task manager runs: the one vocabulary of a task row.

The API starts tasks by these names and the task manager maps each name to its steps
(``taskmanager.workflows.WORKFLOWS``); a test checks that both sides know the same names.
"""

from __future__ import annotations

import enum


@enum.unique
class WorkflowName(enum.StrEnum):
    PROVISION = "provision"
    PROVISION_RESTORE = "provision_restore"
    PROVISION_REPLICA = "provision_replica"
    DELETE = "delete"
    RESTART = "restart"
    RESIZE_FLAVOR = "resize_flavor"
    RESIZE_VOLUME = "resize_volume"
    APPLY_CONFIGURATION = "apply_configuration"
    APPLY_ACCESS = "apply_access"
    BACKUP = "backup"
    DELETE_BACKUP = "delete_backup"
    VERIFY_BACKUP = "verify_backup"
    SWITCHOVER = "switchover"
    FAILOVER = "failover"
    DETACH = "detach"
    REPLICATION_MODE = "replication_mode"
    CREATE_DATABASES = "create_databases"
    DELETE_DATABASE = "delete_database"
    CREATE_USERS = "create_users"
    DELETE_USER = "delete_user"
    CHANGE_PASSWORDS = "change_passwords"
    GRANT_ACCESS = "grant_access"
    REVOKE_ACCESS = "revoke_access"
    ENABLE_ROOT = "enable_root"
    DISABLE_ROOT = "disable_root"
    PUBLISH_LOG = "publish_log"
    DISCARD_LOG = "discard_log"
    ISSUE_CREDENTIAL = "issue_credential"
    END_CREDENTIAL = "end_credential"
