"""Making and dropping the logins of debug credentials (``cellar.credentials``), and
beat's sweep that ends them on time.

Dropping a login ends its open sessions (each engine's ``delete_user`` does). The sweep
runs every ``EVERY`` seconds: it ends every ACTIVE credential whose time is up (or that
someone revoked, whose task did not get to it), fails ISSUING ones left by a crash,
rejects requests nobody approved within a day, and records the first use of each login
(a session seen open) in the audit trail. Every end is idempotent: a login already gone
is fine, and a credential ends once however many sweeps and tasks reach it.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cellar import audit
from cellar.credentials import APPROVAL_WAIT, ISSUE_WAIT, State, audit_details, expiry
from cellar.errors import CellarError
from cellar.models import AuditEvent, Credential, Instance, utcnow
from taskmanager.agent_client import AgentClient, NewUser
from taskmanager.context import Services

logger = logging.getLogger(__name__)

EVERY = 10.0
VALID_GRACE = dt.timedelta(minutes=2)  # PostgreSQL refuses the login by itself after this


def record(session: Session, credential: Credential, action: str, outcome: str,
           **more: object) -> None:  # fmt: skip
    audit.append(session, AuditEvent(
        project_id=credential.project_id, request_id=f"credential-{credential.id[:8]}",
        action=action, target_type="instance", target_id=credential.instance_id,
        details=audit_details(credential, **more), user_name="cellar", outcome=outcome,
    ))  # fmt: skip


def make_login(agent: AgentClient, credential: Credential, password: str,
               now: dt.datetime) -> None:  # fmt: skip
    """Make the credential's login, valid from ``now`` for its time to live."""
    ends = expiry(credential, now)
    agent.create_user(NewUser(
        name=credential.user_name, password=password, databases=tuple(credential.databases),
        access=credential.access,
        valid_until=(ends + VALID_GRACE).isoformat(timespec="seconds") + "Z",
    ))  # fmt: skip
    credential.state, credential.issued_at, credential.expires_at = State.ACTIVE, now, ends
    credential.sealed = None


def end(session: Session, services: Services, credential: Credential, now: dt.datetime) -> bool:
    """Drop the login of a credential that is over and say how it ended; False when its
    instance's agent could not be reached (the next sweep tries again)."""
    if credential.state == State.PENDING_APPROVAL:
        credential.state, credential.ended_at, credential.sealed = State.REJECTED, now, None
        record(session, credential, "credential.rejected", "expired",
               why="no other member approved it within a day")  # fmt: skip
        return True
    instance = session.get(Instance, credential.instance_id)
    if instance is not None and instance.deleted_at is None and instance.agent_port is not None:
        try:
            services.agent_for(instance).delete_user(credential.user_name, "")
        except (CellarError, LookupError) as exc:
            logger.warning("credential %s: login %s not dropped yet: %s", credential.id,
                           credential.user_name, exc)  # fmt: skip
            return False
    if credential.state == State.ISSUING:
        credential.state, credential.fault = State.FAILED, "the login was not made in time"
        action = "credential.failed"
    elif credential.ended_by:
        credential.state, action = State.REVOKED, "credential.revoked"
    else:
        credential.state, action = State.EXPIRED, "credential.expired"
    credential.ended_at, credential.sealed = now, None
    record(session, credential, action, "200")
    logger.info("credential %s ended %s; login %s dropped", credential.id, credential.state,
                credential.user_name)  # fmt: skip
    return True


def _due(session: Session, now: dt.datetime) -> list[Credential]:
    return list(session.scalars(select(Credential).where(or_(
        (Credential.state == State.ACTIVE) & (Credential.expires_at <= now),
        (Credential.state == State.ISSUING) & (Credential.created <= now - ISSUE_WAIT),
        (Credential.state == State.PENDING_APPROVAL) & (Credential.created <= now - APPROVAL_WAIT),
    ))))  # fmt: skip


def _note_use(session: Session, services: Services, credential: Credential,
              now: dt.datetime) -> None:  # fmt: skip
    instance = session.get(Instance, credential.instance_id)
    if instance is None or instance.deleted_at is not None or instance.agent_port is None:
        return
    try:
        sessions = services.agent_for(instance).count_sessions(credential.user_name, "")
    except (CellarError, LookupError) as exc:
        logger.info("credential %s: sessions not counted: %s", credential.id, exc)
        return
    if sessions > 0:
        credential.first_used_at = now
        record(session, credential, "credential.used", "200", sessions=sessions)


def sweep(services: Services, now: dt.datetime | None = None) -> int:
    """One round: end what is due and note first uses; returns how many ended."""
    now = now or utcnow()
    ended = 0
    with services.db.session() as session:
        for credential in _due(session, now):
            ended += end(session, services, credential, now)
            session.commit()
        unused = select(Credential).where(
            Credential.state == State.ACTIVE, Credential.first_used_at.is_(None)
        )
        for credential in session.scalars(unused).all():
            _note_use(session, services, credential, now)
            session.commit()
    return ended
