"""Logged-in clients for the API's unit tests: a project, a user with roles, a token."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api.app import create_app
from cellar.identity import store
from cellar.identity.bootstrap import bootstrap
from cellar.identity.models import Project, Role, RoleAssignment, User
from cellar.identity.tokens import TokenSealer


def member_of(
    services: Any, project_id: str = "proj1", roles: tuple[str, ...] = ("member",)
) -> str:
    """A token of a new user with ``roles`` on ``project_id`` (made if missing, with that id)."""
    bootstrap(services.settings, services.db)
    with services.db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            project = Project(id=project_id, name=project_id)
            session.add(project)
        user = User(name=f"{project_id}-{'-'.join(roles)}-{_count(session)}")
        session.add(user)
        session.flush()
        for name in roles:
            role = session.scalars(select(Role).where(Role.name == name)).one()
            session.add(RoleAssignment(user_id=user.id, project_id=project.id, role_id=role.id))
        session.flush()
        return _token(services, session, user, project)


def _token(services: Any, session: Any, user: User, project: Project) -> str:
    sealer = TokenSealer.from_home(services.settings.home)
    ttl = services.settings.token_ttl
    token, _who = store.issue(session, sealer, user, project, ("password",), ttl)
    return token


def admin_token(services: Any) -> str:
    """A token of the bootstrap admin (the admin role on the admin project)."""
    bootstrap(services.settings, services.db)
    with services.db.session() as session:
        user = session.scalars(select(User).where(User.name == "admin")).one()
        project = session.scalars(
            select(Project).where(Project.name == services.settings.admin_project)
        ).one()
        return _token(services, session, user, project)


def admin_project_id(services: Any) -> str:
    """The id of the admin project that bootstrap made."""
    bootstrap(services.settings, services.db)
    with services.db.session() as session:
        name = services.settings.admin_project
        return str(session.scalars(select(Project.id).where(Project.name == name)).one())


def _count(session: Any) -> int:
    return len(session.scalars(select(User.id)).all())


def logged_in(client: FlaskClient, token: str) -> FlaskClient:
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token
    return client


def client_for(
    services: Any, project_id: str = "proj1", roles: tuple[str, ...] = ("member",)
) -> FlaskClient:
    """A test client of a new app, logged in as a user with ``roles`` on ``project_id``."""
    return logged_in(create_app(services).test_client(), member_of(services, project_id, roles))


def app_and_token(services: Any, project_id: str = "proj1") -> tuple[Flask, str]:
    return create_app(services), member_of(services, project_id)
