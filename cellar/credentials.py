"""Time-limited logins for debugging and production support: the rules both the API and
the task manager follow.

A credential is asked for with a reason, an access (``read`` or ``write``), the databases
it reaches and a time to live. Cellar makes a login of its own name (``debug_`` and ten
hex digits) with a generated password, shown once; when the time is up, or someone
revokes it, Cellar drops the login, which ends its open sessions. A project can require
that another member approves write access first (``ProjectSetting``).

States: ``PENDING_APPROVAL`` (waiting for a second member), ``ISSUING`` (the login is
being made), ``ACTIVE``, and the ends ``EXPIRED``, ``REVOKED``, ``REJECTED`` and
``FAILED``.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any

from sqlalchemy.orm import Session

from cellar.models import Credential, ProjectSetting

ACCESS = ("read", "write")
MIN_TTL = 60
MAX_TTL = 86400  # a day: longer access is a user of its own
DEFAULT_TTL = 3600
MAX_DATABASES = 20
MAX_REASON = 512
NAME_PREFIX = "debug_"
APPROVAL_WAIT = dt.timedelta(days=1)  # a request nobody approved by then is rejected
ISSUE_WAIT = dt.timedelta(minutes=5)  # an ISSUING credential older than this failed


@enum.unique
class State(enum.StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    ISSUING = "ISSUING"
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


ENDED = (State.EXPIRED, State.REVOKED, State.REJECTED, State.FAILED)


def login_name() -> str:
    return NAME_PREFIX + secrets.token_hex(5)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def needs_approval(session: Session, project_id: str, access: str) -> bool:
    setting = session.get(ProjectSetting, project_id)
    return access == "write" and setting is not None and setting.approve_write_credentials


def expiry(credential: Credential, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=credential.ttl_seconds)


def stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def view(credential: Credential) -> dict[str, Any]:
    """What anyone in the project may see of a credential: never its password."""
    return {
        "id": credential.id,
        "instance_id": credential.instance_id,
        "user": credential.user_name,
        "access": credential.access,
        "databases": list(credential.databases),
        "reason": credential.reason,
        "ttl_seconds": credential.ttl_seconds,
        "state": credential.state,
        "requested_by": credential.requested_by,
        "approved_by": credential.approved_by,
        "created": stamp(credential.created),
        "issued_at": stamp(credential.issued_at),
        "expires_at": stamp(credential.expires_at),
        "first_used_at": stamp(credential.first_used_at),
        "ended_at": stamp(credential.ended_at),
        "fault": credential.fault,
    }


def audit_details(credential: Credential, **more: Any) -> dict[str, Any]:
    """The audit row's details of a credential event: who, what, for how long and why."""
    return {
        "credential_id": credential.id,
        "user": credential.user_name,
        "access": credential.access,
        "databases": list(credential.databases),
        "ttl_seconds": credential.ttl_seconds,
        "reason": credential.reason,
        "requested_by": credential.requested_by,
        **more,
    }
