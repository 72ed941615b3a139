"""Cellar's first start: the roles, the ``admin`` project and user, and ``admin-openrc``.

Run at every start (``cellar serve``, the API); it makes only what is missing. The admin
user's password is generated once and written, with what the ``openstack`` CLI needs,
to ``CELLAR_HOME/admin-openrc`` (mode 0600). Lost, it can be made again:
``cellar admin reset-password`` gives the admin a new password and a new file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cellar import pki
from cellar.db import Database
from cellar.identity.models import DOMAIN_NAME, Project, Role, RoleAssignment, User
from cellar.identity.passwords import hash_password
from cellar.identity.store import ROLES, revoke
from cellar.models import utcnow
from cellar.settings import Settings

logger = logging.getLogger(__name__)

ADMIN_USER = "admin"
OPENRC = "admin-openrc"


def openrc_path(settings: Settings) -> Path:
    return settings.home / OPENRC


def bootstrap(settings: Settings, db: Database) -> bool:
    """Make the roles, the admin project and the admin user if missing; True if the
    admin user was made now (and ``admin-openrc`` written)."""
    for _ in range(3):  # another process may be making the same rows
        try:
            return _bootstrap(settings, db)
        except IntegrityError:
            logger.info("identity rows made by another process; looking again")
    return _bootstrap(settings, db)


def _bootstrap(settings: Settings, db: Database) -> bool:
    with db.session() as session:
        roles = {r.name: r for r in session.scalars(select(Role))}
        for name in ROLES:
            if name not in roles:
                roles[name] = Role(name=name, description=f"Cellar's {name} role")
                session.add(roles[name])
        project = session.scalars(
            select(Project).where(Project.name == settings.admin_project)
        ).first()
        if project is None:
            project = Project(name=settings.admin_project, description="Cellar's administrators")
            session.add(project)
        user = session.scalars(select(User).where(User.name == ADMIN_USER)).first()
        if user is not None:
            return False
        password = secrets.token_urlsafe(18)
        user = User(
            name=ADMIN_USER,
            password_hash=hash_password(password),
            default_project_id=project.id,
            password_changed_at=utcnow(),
        )
        session.add(user)
        session.flush()
        session.add(
            RoleAssignment(user_id=user.id, project_id=project.id, role_id=roles["admin"].id)
        )
    write_openrc(settings, password)
    logger.info("made the admin user; its credentials are in %s", openrc_path(settings))
    return True


def ca_line(settings: Settings) -> tuple[tuple[str, str], ...]:
    """``OS_CACERT``, the CA that clients check the API's certificate with, when Cellar
    issued that certificate (``CELLAR_TLS=auto``) or the operator named it."""
    if settings.tls_auto:
        return (("OS_CACERT", str(pki.ca_path(settings.home))),)
    given = os.environ.get("CELLAR_TLS_CA", "").strip()
    return (("OS_CACERT", given),) if settings.api_tls and given else ()


def write_openrc(settings: Settings, password: str) -> Path:
    """``admin-openrc``: the variables the ``openstack`` and ``cellar`` CLIs log in with."""
    path = openrc_path(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"export {name}={value}\n"
        for name, value in (
            ("OS_AUTH_URL", settings.identity_url),
            ("OS_USERNAME", ADMIN_USER),
            ("OS_PASSWORD", password),
            ("OS_PROJECT_NAME", settings.admin_project),
            ("OS_USER_DOMAIN_NAME", DOMAIN_NAME),
            ("OS_PROJECT_DOMAIN_NAME", DOMAIN_NAME),
            ("OS_IDENTITY_API_VERSION", "3"),
            *ca_line(settings),
        )
    )
    scratch = path.with_name(OPENRC + ".new")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(scratch, path)
    return path


def refresh_openrc(settings: Settings) -> None:
    """Write ``admin-openrc`` again with the admin's password it holds, so that its URL
    and CA follow the settings (HTTPS turned on or off since it was written)."""
    try:
        lines = openrc_path(settings).read_text().splitlines()
    except FileNotFoundError:
        return
    found = dict(line.removeprefix("export ").split("=", 1) for line in lines if "=" in line)
    if "OS_PASSWORD" in found:
        write_openrc(settings, found["OS_PASSWORD"])


def reset_admin_password(settings: Settings, db: Database) -> Path:
    """Give the admin user a new password (its old tokens stop counting) and a new file."""
    bootstrap(settings, db)
    password = secrets.token_urlsafe(18)
    with db.session() as session:
        user = session.scalars(select(User).where(User.name == ADMIN_USER)).one()
        user.password_hash = hash_password(password)
        user.password_changed_at = utcnow()
        revoke(session, "user", user.id, utcnow() + dt.timedelta(seconds=settings.token_ttl))
    return write_openrc(settings, password)
