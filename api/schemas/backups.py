"""Bodies of ``/backups`` (take one, verify one) and ``/backup_strategies`` (Cellar's
schedule and retention, or the stock client's ``{instance_id, swift_container}``)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, StrictBool, StrictStr

from api.schemas.base import Body, IntLike, Request, documented, optional

BACKUPS = "/v1.0/<project_id>/backups"


class NewBackup(Body):
    """A backup of an instance: full, or incremental on the latest or on ``parent_id``."""

    blank_is_unset = ("parent_id",)

    name: StrictStr = Field(max_length=255)
    instance: StrictStr = Field(description="the id of the instance to back up")
    description: StrictStr | None = Field(
        None, max_length=2000, description="a text of at most 2000 characters"
    )
    incremental: Any = Field(
        None, description='1, true, "1" or "true" for an incremental backup on the latest one'
    )
    parent_id: StrictStr | None = Field(None, description="the id of the backup to build on")


class CreateBackup(Request):
    """``POST /backups``."""

    wrapper = "backup"

    backup: NewBackup


class BackupAction(Request):
    """``POST /backups/{id}/action``: ``{"verify": {}}`` restores the backup into a scratch
    instance and checks it."""

    model_config = ConfigDict(extra="forbid")
    closed = True

    verify: Any = Field(description="{}")


class NewStrategy(Body):
    """When to back an instance up and what to keep. The stock client sends only
    ``instance_id`` and ``swift_container``: a backup every day at 03:00 UTC, all kept."""

    schema_extra = {
        "examples": [
            {"instance_id": "<id>", "schedule": "0 3 * * *", "keep_count": 7, "verify": True},
            {"instance_id": "<id>", "swift_container": "team-backups"},
        ]
    }

    instance_id: StrictStr = Field(description="the id of the instance to back up")
    schedule: StrictStr = optional(
        description='five cron fields "minute hour day month weekday" in UTC (names such as'
        ' "mon" or "jan" allowed), e.g. "0 3 * * *", or @hourly, @daily, @weekly, @monthly'
        " or @yearly"
    )
    keep_count: IntLike | None = documented(minimum=1, maximum=1000)
    keep_days: IntLike | None = documented(minimum=1, maximum=3650)
    verify: StrictBool = optional()
    incremental: StrictBool = optional()
    swift_container: StrictStr | None = Field(
        None, description="a name of 1 to 255 letters, digits, '_', '.' or '-' (kept and shown)"
    )


class CreateBackupStrategy(Request):
    """``POST /backup_strategies``: Cellar's body or Trove's."""

    wrapper = "backup_strategy"

    backup_strategy: NewStrategy


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", BACKUPS): CreateBackup,
    ("POST", f"{BACKUPS}/<backup_id>/action"): BackupAction,
    ("POST", "/v1.0/<project_id>/backup_strategies"): CreateBackupStrategy,
}
