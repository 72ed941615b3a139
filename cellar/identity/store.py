"""Cellar's own identity store: logging in, issuing tokens, and finding out who a token
is for, with the roles that user has on the project *now*.

Every failure to log in or to use a token is a ``BadToken`` (HTTP 401) whose message
says nothing an attacker could use (which of the user or the password was wrong).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.orm import Session

from cellar.identity.models import (
    DOMAIN_ID,
    DOMAIN_NAME,
    ApplicationCredential,
    IdentityEpoch,
    Project,
    Revocation,
    Role,
    RoleAssignment,
    User,
)
from cellar.identity.passwords import check_password
from cellar.identity.tokens import BadToken, Sealed, TokenSealer, new_audit_id
from cellar.models import utcnow

ROLES = ("reader", "member", "admin")  # each includes the ones before it
LOGIN_FAILED = "the user name or password is wrong, or the user may not use that project"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a request acts as: a user in a project, with their roles there."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]
    role_ids: tuple[str, ...]
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    audit_id: str
    app_credential_id: str = ""

    def has(self, role: str) -> bool:
        """Whether the identity holds ``role`` or one that includes it."""
        wanted = ROLES.index(role)
        return any(r in ROLES and ROLES.index(r) >= wanted for r in self.roles)


def implied(held: Iterable[str]) -> set[str]:
    """The role names ``held`` gives: each, with the roles it includes."""
    names = set(held)
    top = max((ROLES.index(n) for n in names if n in ROLES), default=-1)
    return names | set(ROLES[: top + 1])


def domain_matches(ref: object) -> bool:
    """Whether a request's ``domain`` reference (absent, by id or by name) is Default."""
    if ref in (None, {}):
        return True
    if not isinstance(ref, dict):
        return False
    return ref.get("id") in (None, DOMAIN_ID) and ref.get("name") in (None, DOMAIN_NAME)


def find_user(session: Session, ref: object) -> User | None:
    """The enabled or disabled user a ``{"id"}`` or ``{"name", "domain"}`` names."""
    if not isinstance(ref, dict):
        return None
    if ref.get("id"):
        return session.get(User, str(ref["id"]))
    if not ref.get("name") or not domain_matches(ref.get("domain")):
        return None
    return session.scalars(select(User).where(User.name == str(ref["name"]))).first()


def find_project(session: Session, ref: object) -> Project | None:
    if not isinstance(ref, dict):
        return None
    if ref.get("id"):
        return session.get(Project, str(ref["id"]))
    if not ref.get("name") or not domain_matches(ref.get("domain")):
        return None
    return session.scalars(select(Project).where(Project.name == str(ref["name"]))).first()


def roles_on(session: Session, user_id: str, project_id: str) -> list[Role]:
    return list(
        session.scalars(
            select(Role)
            .join(RoleAssignment, RoleAssignment.role_id == Role.id)
            .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)
            .order_by(Role.name)
        )
    )


def password_login(session: Session, user_ref: object, password: object) -> User:
    """The user whose password this is; BadToken otherwise (the same for every reason)."""
    user = find_user(session, user_ref)
    ok = check_password(str(password or ""), user.password_hash if user else None)
    if user is None or not ok or not user.enabled:
        raise BadToken(LOGIN_FAILED)
    return user


def credential_login(session: Session, ref: object, secret: object) -> ApplicationCredential:
    """The application credential ``ref`` names (``{"id"}``, or ``{"name", "user"}``)
    whose secret this is, if it has not expired; BadToken otherwise."""
    found: ApplicationCredential | None = None
    if isinstance(ref, dict) and ref.get("id"):
        found = session.get(ApplicationCredential, str(ref["id"]))
    elif isinstance(ref, dict) and ref.get("name"):
        owner = find_user(session, ref.get("user"))
        if owner is not None:
            found = session.scalars(
                select(ApplicationCredential).where(
                    ApplicationCredential.user_id == owner.id,
                    ApplicationCredential.name == str(ref["name"]),
                )
            ).first()
    ok = check_password(str(secret or ""), found.secret_hash if found else None)
    if found is None or not ok:
        raise BadToken("the application credential or its secret is wrong")
    if found.expires_at is not None and found.expires_at <= utcnow():
        raise BadToken("the application credential has expired")
    return found


def issue(
    session: Session,
    sealer: TokenSealer,
    user: User,
    project: Project | None,
    methods: tuple[str, ...],
    lifetime: float,
    *,
    app_credential: ApplicationCredential | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[str, Identity]:
    """A new token for ``user`` in ``project`` (None: an unscoped token, good only for
    the identity API), and who it makes the bearer; BadToken when the user has no role
    there (or the project is disabled)."""
    now = utcnow()
    end = now + dt.timedelta(seconds=lifetime)
    if expires_at is not None:
        end = min(end, expires_at)
    if app_credential is not None and app_credential.expires_at is not None:
        end = min(end, app_credential.expires_at)
    sealed = Sealed(
        user_id=user.id,
        project_id=project.id if project else "",
        methods=methods,
        issued_at=now,
        expires_at=end,
        audit_id=new_audit_id(),
        app_credential_id=app_credential.id if app_credential else "",
    )
    return sealer.seal(sealed), resolve(session, sealed)


def resolve(session: Session, sealed: Sealed) -> Identity:
    """Who an open token makes its bearer now; BadToken if it was revoked, or its user or
    project is disabled or gone, or the user has no role left there."""
    user = session.get(User, sealed.user_id)
    project = session.get(Project, sealed.project_id) if sealed.project_id else None
    if user is None or not user.enabled or (sealed.project_id and project is None):
        raise BadToken("the token's user or project is gone or disabled")
    if project is not None and not project.enabled:
        raise BadToken("the token's user or project is gone or disabled")
    if revoked(session, sealed):
        raise BadToken("the token was revoked")
    if project is None:
        return Identity(
            user_id=user.id,
            user_name=user.name,
            project_id="",
            project_name="",
            roles=(),
            role_ids=(),
            methods=sealed.methods,
            issued_at=sealed.issued_at,
            expires_at=sealed.expires_at,
            audit_id=sealed.audit_id,
        )
    roles = roles_on(session, user.id, project.id)
    if sealed.app_credential_id:
        credential = session.get(ApplicationCredential, sealed.app_credential_id)
        if credential is None:
            raise BadToken("the token's application credential was deleted")
        if not credential.unrestricted or credential.role_ids:
            given = implied(r.name for r in roles)  # its roles the user still has, or includes
            granted = select(Role).where(Role.id.in_(credential.role_ids)).order_by(Role.name)
            roles = [r for r in session.scalars(granted) if r.name in given]
    if not roles:
        raise BadToken(f"the user has no role on project {project.name}")
    return Identity(
        user_id=user.id,
        user_name=user.name,
        project_id=project.id,
        project_name=project.name,
        roles=tuple(r.name for r in roles),
        role_ids=tuple(r.id for r in roles),
        methods=sealed.methods,
        issued_at=sealed.issued_at,
        expires_at=sealed.expires_at,
        audit_id=sealed.audit_id,
        app_credential_id=sealed.app_credential_id,
    )


def projects_of(session: Session, user_id: str) -> list[Project]:
    """The enabled projects where the user has a role."""
    return list(
        session.scalars(
            select(Project)
            .join(RoleAssignment, RoleAssignment.project_id == Project.id)
            .where(RoleAssignment.user_id == user_id, Project.enabled.is_(True))
            .distinct()
            .order_by(Project.name)
        )
    )


def revoked(session: Session, sealed: Sealed) -> bool:
    targets = [("token", sealed.audit_id), ("user", sealed.user_id)]
    if sealed.project_id:
        targets.append(("project", sealed.project_id))
    if sealed.app_credential_id:
        targets.append(("app_credential", sealed.app_credential_id))
    found = session.scalars(
        select(Revocation.id)
        .where(
            or_(
                *[
                    (Revocation.kind == kind) & (Revocation.value == value)
                    for kind, value in targets
                ]
            ),
            Revocation.issued_before >= sealed.issued_at,
        )
        .limit(1)
    ).first()
    return found is not None


def revoke(session: Session, kind: str, value: str, until: dt.datetime, **details: str) -> None:
    """Make tokens of ``kind`` (token, user, project, app_credential) ``value`` issued until
    now count no more; the record can go once no such token would still be valid."""
    now = utcnow()
    session.execute(delete(Revocation).where(Revocation.expires_at < now))
    session.add(
        Revocation(kind=kind, value=value, issued_before=now, expires_at=until, details=details)
    )


EPOCH = select(IdentityEpoch.value).where(IdentityEpoch.id == 1)  # read on every request


def epoch(connection: Session | Connection) -> int:
    """How many changes to identities there have been (see ``IdentityEpoch``)."""
    return int(connection.execute(EPOCH).scalar() or 0)


def bump_epoch(session: Session) -> None:
    """Count one more change to identities, in ``session``'s transaction."""
    moved = session.execute(
        update(IdentityEpoch).where(IdentityEpoch.id == 1).values(value=IdentityEpoch.value + 1)
    )
    if not getattr(moved, "rowcount", 0):
        session.add(IdentityEpoch(id=1, value=1))
