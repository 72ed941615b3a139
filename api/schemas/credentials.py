"""The bodies of debug credentials (``/instances/{id}/credentials``) and of a project's
settings (``/settings``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictStr

from api.schemas.base import Body, IntLike, Request, documented, optional
from cellar.credentials import ACCESS, DEFAULT_TTL, MAX_DATABASES, MAX_REASON, MAX_TTL, MIN_TTL

BASE = "/v1.0/<project_id>/instances/<instance_id>/credentials"


class DebugLogin(Body):
    """A login for debugging or production support, dropped when its time is up."""

    closed = True
    route_requires = ("reason",)

    ttl_seconds: IntLike | None = documented(
        DEFAULT_TTL, minimum=MIN_TTL, maximum=MAX_TTL,
        description=f"how long the login works, in seconds (default {DEFAULT_TTL})",
    )  # fmt: skip
    access: StrictStr = optional(
        description="read (the default: SELECT only) or write (rows too, no schema changes)",
        json_schema_extra={"enum": list(ACCESS)},
    )
    databases: list[StrictStr] | None = Field(
        None,
        description="the databases the login reaches (required on PostgreSQL and MariaDB, "
        "left out on Redis)",
        json_schema_extra={"maxItems": MAX_DATABASES},
    )
    reason: StrictStr = optional(
        description=f"why the access is needed, 1 to {MAX_REASON} characters (audited)"
    )


class CreateDebugLogin(Request):
    """``POST /instances/{id}/credentials``: the password is in the answer, only there."""

    wrapper = "credential"
    schema_extra = {
        "examples": [
            {"credential": {"ttl_seconds": 3600, "access": "read", "databases": ["app"],
                            "reason": "INC-42: slow checkout query"}},
        ]
    }  # fmt: skip

    credential: DebugLogin


class DebugLoginAction(Request):
    """``POST /credentials/{id}/action``: another member approves or rejects a request for
    write access, when the project's settings ask for approval."""

    closed = True
    schema_extra = {"minProperties": 1, "maxProperties": 1}

    approve: dict[str, Any] | None = Field(None, description="{} to approve")
    reject: dict[str, Any] | None = Field(None, description="{} to reject")


class ProjectRules(Body):
    closed = True

    approve_write_credentials: StrictBool = optional(
        description="whether write access through debug credentials needs another member's "
        "approval (default false)"
    )


class SetProjectRules(Request):
    """``PUT /settings``: a project's own rules (its admins)."""

    wrapper = "settings"

    settings: ProjectRules


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", BASE): CreateDebugLogin,
    ("POST", f"{BASE}/<credential_id>/action"): DebugLoginAction,
    ("PUT", "/v1.0/<project_id>/settings"): SetProjectRules,
}
