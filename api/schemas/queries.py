"""The query parameters of the routes that take them, for the document: the routes read
them with ``request.args`` and check them themselves (``api.body.integer``, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api import audit_routes, backups, engine_logs, instances, mgmt
from cellar import metrics

V3 = "/identity/v3"
PROJECT = "/v1.0/<project_id>"
TIME = "an RFC 3339 time (ISO 8601), e.g. 2026-11-25T09:30:00Z"
FLAG = "true or false (also 1 or 0, yes or no)"


class Query(BaseModel):
    """A route's query parameters; all are optional unless the route says otherwise."""

    model_config = ConfigDict(populate_by_name=True)


def _limit(high: int, default: int) -> int:
    return Field(default, ge=1, le=high, description=f"at most this many, from 1 to {high}")


class InstancePage(Query):
    limit: int = _limit(instances.PAGE_MAX, instances.PAGE_MAX)
    marker: str | None = Field(None, description="the id of the last instance of the page before")


class BackupList(Query):
    limit: int = _limit(backups.PAGE_MAX, backups.PAGE_MAX)
    instance_id: str | None = Field(None, description="only this instance's backups")
    datastore: str | None = Field(None, description="only backups of this datastore")


class InstanceBackupList(Query):
    limit: int = _limit(backups.PAGE_MAX, backups.PAGE_MAX)
    datastore: str | None = Field(None, description="only backups of this datastore")


class StrategyList(Query):
    instance_id: str | None = Field(None, description="only this instance's strategy")
    project_id: str | None = Field(None, description="this project (another is refused)")


class StrategyDelete(Query):
    instance_id: str = Field(description="the instance whose strategy goes")
    project_id: str | None = Field(None, description="this project (another is refused)")


class AuditList(Query):
    since: str | None = Field(None, description=f"events from this moment: {TIME}")
    until: str | None = Field(None, description=f"events before this moment: {TIME}")
    user: str | None = Field(None, max_length=255, description="a user's id or name")
    target: str | None = Field(None, max_length=255, description="the id of what was acted on")
    action: str | None = Field(None, max_length=255, description="e.g. instance.create")
    limit: int = _limit(audit_routes.PAGE_MAX, 100)
    marker: int | None = Field(
        None, ge=1, description="the seq of the last event of the page before"
    )
    project_id: str | None = Field(None, description="admins in the admin project: one project's")


class LogTail(Query):
    lines: int = Field(100, ge=1, le=engine_logs.MAX_LINES, description="the last this many lines")


class MetricWindow(Query):
    minutes: int = Field(
        60, ge=1, le=metrics.MAX_MINUTES, description="the samples of the last this many minutes"
    )
    since: str | None = Field(None, description=f"the samples from this moment: {TIME}")


class MgmtInstanceList(Query):
    limit: int = _limit(mgmt.PAGE_MAX, mgmt.PAGE_MAX)
    marker: str | None = Field(None, description="the id of the last instance of the page before")
    deleted: str | None = Field(None, description=f"deleted ones only, or live ones only: {FLAG}")
    include_clustered: str | None = Field(None, description=f"{FLAG}; Cellar has no clusters")
    project_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="one project's"
    )


class MgmtInstanceShow(Query):
    deleted: str | None = Field(None, description=f"a deleted instance too: {FLAG}")


class MgmtTasks(Query):
    state: Literal["failed", "stuck"] = Field("failed", description="failed tasks, or stuck ones")
    hours: int = Field(24, ge=1, le=24 * 30, description="failed in the last this many hours")


class MgmtReplicationEvents(Query):
    hours: int = Field(24, ge=1, le=24 * 30, description="in the last this many hours")
    kind: str | None = Field(None, description="switchover, failover or automatic_failover")


class ByName(Query):
    name: str | None = Field(None, description="only the one of this name")


class DirectoryList(Query):
    name: str | None = Field(None, description="only the one of this name")
    enabled: str | None = Field(None, description=f"only enabled ones, or disabled ones: {FLAG}")
    domain_id: str | None = Field(None, description='"default" (another domain has none)')


class Assignments(Query):
    user_id: str | None = Field(None, alias="user.id", description="only this user's")
    project_id: str | None = Field(
        None, alias="scope.project.id", description="only on this project"
    )
    role_id: str | None = Field(None, alias="role.id", description="only this role")
    include_names: str | None = Field(None, description="name the user, project and role too")


class TokenView(Query):
    nocatalog: str | None = Field(None, description="given (any value), the token has no catalog")


QUERIES: dict[tuple[str, str], type[Query]] = {
    ("GET", f"{PROJECT}/instances"): InstancePage,
    ("GET", f"{PROJECT}/instances/detail"): InstancePage,
    ("GET", f"{PROJECT}/backups"): BackupList,
    ("GET", f"{PROJECT}/instances/<instance_id>/backups"): InstanceBackupList,
    ("GET", f"{PROJECT}/backup_strategies"): StrategyList,
    ("DELETE", f"{PROJECT}/backup_strategies"): StrategyDelete,
    ("GET", f"{PROJECT}/audit"): AuditList,
    ("GET", f"{PROJECT}/instances/<instance_id>/log/<name>"): LogTail,
    ("GET", f"{PROJECT}/instances/<instance_id>/metrics"): MetricWindow,
    ("GET", f"{PROJECT}/mgmt/instances"): MgmtInstanceList,
    ("GET", f"{PROJECT}/mgmt/instances/<instance_id>"): MgmtInstanceShow,
    ("GET", f"{PROJECT}/mgmt/tasks"): MgmtTasks,
    ("GET", f"{PROJECT}/mgmt/replication_events"): MgmtReplicationEvents,
    ("GET", f"{V3}/projects"): DirectoryList,
    ("GET", f"{V3}/users"): DirectoryList,
    ("GET", f"{V3}/domains"): ByName,
    ("GET", f"{V3}/roles"): ByName,
    ("GET", f"{V3}/users/<user_id>/application_credentials"): ByName,
    ("GET", f"{V3}/role_assignments"): Assignments,
    ("GET", f"{V3}/auth/tokens"): TokenView,
    ("POST", f"{V3}/auth/tokens"): TokenView,
}
