"""Who may use Cellar: projects, users, roles and their assignments, application
credentials, and revoked tokens, as Keystone v3 knows them (one domain, ``Default``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cellar.models import Base, utcnow

DOMAIN_ID = "default"
DOMAIN_NAME = "Default"


def new_key() -> str:
    """An id as Keystone makes them: 32 hex digits."""
    return uuid.uuid4().hex


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (Index("ux_projects_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_key)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    domain_id: Mapped[str] = mapped_column(String(64), default=DOMAIN_ID)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ux_users_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_key)
    name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    default_project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    domain_id: Mapped[str] = mapped_column(String(64), default=DOMAIN_ID)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (Index("ux_roles_name", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_key)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")


class RoleAssignment(Base):
    """A user's role on a project."""

    __tablename__ = "role_assignments"
    __table_args__ = (Index("ix_role_assignments_project", "project_id"),)

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )


class ApplicationCredential(Base):
    """A secret a user made for a program: it logs in to one project with some of the
    user's roles there, until it expires or is deleted."""

    __tablename__ = "application_credentials"
    __table_args__ = (Index("ux_app_credentials_name", "user_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_key)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    secret_hash: Mapped[str] = mapped_column(String(255))
    role_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    unrestricted: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Revocation(Base):
    """Tokens that no longer count: one token (by its audit id), or every token of a user,
    a project or an application credential issued before a moment."""

    __tablename__ = "revocations"
    __table_args__ = (Index("ix_revocations_lookup", "kind", "value"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_key)
    kind: Mapped[str] = mapped_column(String(16))  # token, user, project, app_credential
    value: Mapped[str] = mapped_column(String(64))
    issued_before: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)  # then it can be forgotten
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IdentityEpoch(Base):
    """One row, counting the changes to who a token is for (revocations, roles taken away,
    users, projects or credentials disabled or deleted): API processes that remember
    validated tokens forget them when it moves."""

    __tablename__ = "identity_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
