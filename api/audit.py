"""The audit trail: one row per change a user asked for, written with its intent."""

from __future__ import annotations

from typing import Any

from flask import g
from sqlalchemy.orm import Session

from cellar.models import AuditEvent

SECRET_WORDS = ("password", "secret", "token")


def scrub(details: Any) -> Any:
    """A copy of ``details`` with every password-like value replaced."""
    if isinstance(details, dict):
        return {
            k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else scrub(v)
            for k, v in details.items()
        }
    if isinstance(details, list):
        return [scrub(v) for v in details]
    return details


def record(
    session: Session,
    project_id: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            project_id=project_id,
            request_id=g.get("request_id", "-"),
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=scrub(details or {}),
        )
    )
