"""Projects, users and the one domain: what ``openstack project ...`` and
``openstack user ...`` manage. Admins manage them; a user may see themselves and the
projects they have a role on, and change their own password."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import audit, body
from api.identity.access import admin, admin_or, caller, is_admin
from api.identity.views import BASE, collection, domain_view, project_view, user_view
from api.schemas import parse
from api.schemas.identity import (
    ChangeOwnPassword,
    CreateIdentityUser,
    CreateProject,
    UpdateIdentityUser,
    UpdateProject,
)
from api.state import services
from cellar import names
from cellar.errors import Conflict, Forbidden, InvalidInput, NotFound
from cellar.identity import store
from cellar.identity.bootstrap import ADMIN_USER
from cellar.identity.models import DOMAIN_ID, Project, User
from cellar.identity.passwords import check_password, hash_password
from cellar.models import Backup, Instance, utcnow

blueprint = Blueprint("identity_directory", __name__)

NAME_MAX = 64


def _name(data: dict[str, Any], field: str = "name") -> str:
    value = body.text(data, field, max_len=NAME_MAX)
    if value != value.strip() or "/" in value:
        raise InvalidInput(f"{field} may not start or end with spaces, nor hold a '/'")
    return value


def _domain(data: dict[str, Any]) -> None:
    if data.get("domain_id") not in (None, DOMAIN_ID):
        raise InvalidInput(f"Cellar has one domain, {DOMAIN_ID!r}")


def _flag(data: dict[str, Any], field: str) -> bool | None:
    value = data.get(field)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false")
    return value


def _listed(query: Any, model: Any) -> Any:
    if request.args.get("name"):
        query = query.where(model.name == request.args["name"])
    enabled = request.args.get("enabled")
    if enabled is not None:
        query = query.where(model.enabled.is_(enabled.lower() in ("true", "1", "yes")))
    if request.args.get("domain_id") not in (None, DOMAIN_ID):
        query = query.where(model.id.is_(None))
    return query.order_by(model.name)


def _project(session: Session, project_id: str) -> Project:
    found = session.get(Project, project_id)
    if found is None:
        raise NotFound(f"Could not find project: {project_id}.")
    return found


def _name_free(session: Session, model: type[Project] | type[User], name: str) -> None:
    """Refuse (409) a name another project or user already has."""
    if session.scalars(select(model).where(model.name == name)).first() is not None:
        raise Conflict(f"a {model.__name__.lower()} named {name!r} exists already")


def _user(session: Session, user_id: str) -> User:
    found = session.get(User, user_id)
    if found is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return found


def _revoke_all(session: Session, kind: str, value: str, reason: str) -> None:
    until = utcnow() + dt.timedelta(seconds=services().settings.token_ttl)
    store.revoke(session, kind, value, until, reason=reason)


# --- domains -------------------------------------------------------------------------


@blueprint.get(f"{BASE}/domains")
def list_domains() -> ResponseReturnValue:
    caller()
    wanted = request.args.get("name")
    shown = [] if wanted not in (None, "Default") else [domain_view()]
    return jsonify(collection("domains", shown))


@blueprint.get(f"{BASE}/domains/<domain_id>")
def show_domain(domain_id: str) -> ResponseReturnValue:
    caller()
    if domain_id not in (DOMAIN_ID, "Default"):
        raise NotFound(f"Could not find domain: {domain_id}.")
    return jsonify({"domain": domain_view()})


# --- projects ------------------------------------------------------------------------


@blueprint.post(f"{BASE}/projects")
def create_project() -> ResponseReturnValue:
    admin()
    data = parse(CreateProject)
    _domain(data)
    name = _name(data)
    with services().db.session() as session:
        if session.scalars(select(Project).where(Project.name == name)).first() is not None:
            raise Conflict(f"a project named {name!r} exists already")
        project = Project(
            name=name,
            description=body.text(data, "description", required=False, max_len=1024),
            enabled=_flag(data, "enabled") is not False,
        )
        session.add(project)
        session.flush()
        audit.record(
            session, project.id, "identity.project_create", "project", project.id, {"name": name}
        )
        return jsonify({"project": project_view(project)}), 201


@blueprint.get(f"{BASE}/projects")
def list_projects() -> ResponseReturnValue:
    me = caller()
    with services().db.session() as session:
        if is_admin(me):
            rows = list(session.scalars(_listed(select(Project), Project)))
        else:
            rows = [
                p
                for p in store.projects_of(session, me.user_id)
                if not request.args.get("name") or p.name == request.args["name"]
            ]
        return jsonify(collection("projects", [project_view(p) for p in rows]))


@blueprint.get(f"{BASE}/projects/<project_id>")
def show_project(project_id: str) -> ResponseReturnValue:
    me = caller()
    with services().db.session() as session:
        project = _project(session, project_id)
        mine = {p.id for p in store.projects_of(session, me.user_id)}
        if project.id not in mine and not is_admin(me):
            raise Forbidden("you may see only the projects you have a role on")
        return jsonify({"project": project_view(project)})


@blueprint.patch(f"{BASE}/projects/<project_id>")
def update_project(project_id: str) -> ResponseReturnValue:
    admin()
    data = parse(UpdateProject)
    with services().db.session() as session:
        project = _project(session, project_id)
        if "name" in data and _name(data) != project.name:
            if project.name == services().settings.admin_project:
                raise Forbidden("the admin project cannot be renamed")
            _name_free(session, Project, _name(data))
            project.name = _name(data)
        if "description" in data:
            project.description = body.text(data, "description", required=False, max_len=1024)
        enabled = _flag(data, "enabled")
        if enabled is not None:
            if project.name == services().settings.admin_project and not enabled:
                raise Forbidden("the admin project cannot be disabled")
            if project.enabled and not enabled:
                _revoke_all(session, "project", project.id, "project disabled")
            project.enabled = enabled
        audit.record(
            session,
            project.id,
            "identity.project_update",
            "project",
            project.id,
            {k: data[k] for k in ("name", "description", "enabled") if k in data},
        )
        return jsonify({"project": project_view(project)})


@blueprint.delete(f"{BASE}/projects/<project_id>")
def delete_project(project_id: str) -> ResponseReturnValue:
    admin()
    with services().db.session() as session:
        project = _project(session, project_id)
        if project.name == services().settings.admin_project:
            raise Forbidden("the admin project cannot be deleted")
        held = _holdings(session, project.id)
        if held:
            raise Conflict(f"project {project.name} still has {held}: delete them first")
        _revoke_all(session, "project", project.id, "project deleted")
        audit.record(
            session,
            project.id,
            "identity.project_delete",
            "project",
            project.id,
            {"name": project.name},
        )
        session.delete(project)
    return Response(status=204)


def _holdings(session: Session, project_id: str) -> str:
    """What Cellar still keeps for the project, in words ("" when nothing)."""
    instances = session.scalar(
        select(func.count())
        .select_from(Instance)
        .where(Instance.project_id == project_id, Instance.deleted_at.is_(None))
    )
    backups = session.scalar(
        select(func.count())
        .select_from(Backup)
        .where(Backup.project_id == project_id, Backup.deleted_at.is_(None))
    )
    held = [f"{n} {what}" for n, what in ((instances, "instances"), (backups, "backups")) if n]
    return " and ".join(held)


# --- users ---------------------------------------------------------------------------


def _password(value: object) -> str:
    return names.check_password(value, "the password")


@blueprint.post(f"{BASE}/users")
def create_user() -> ResponseReturnValue:
    admin()
    data = parse(CreateIdentityUser)
    _domain(data)
    name = _name(data)
    with services().db.session() as session:
        if session.scalars(select(User).where(User.name == name)).first() is not None:
            raise Conflict(f"a user named {name!r} exists already")
        default = data.get("default_project_id")
        if default is not None:
            _project(session, str(default))
        user = User(
            name=name,
            password_hash=hash_password(_password(data["password"]))
            if "password" in data
            else None,
            enabled=_flag(data, "enabled") is not False,
            email=body.text(data, "email", required=False) or None,
            description=body.text(data, "description", required=False, max_len=1024),
            default_project_id=default,
            password_changed_at=utcnow() if "password" in data else None,
        )
        session.add(user)
        session.flush()
        audit.record(
            session,
            default or "",
            "identity.user_create",
            "user",
            user.id,
            {"name": name, "password": "***" if "password" in data else None},
        )
        return jsonify({"user": user_view(user)}), 201


@blueprint.get(f"{BASE}/users")
def list_users() -> ResponseReturnValue:
    me = caller()
    with services().db.session() as session:
        if is_admin(me):
            rows = list(session.scalars(_listed(select(User), User)))
        else:
            rows = [_user(session, me.user_id)]
            if request.args.get("name") not in (None, rows[0].name):
                rows = []
        return jsonify(collection("users", [user_view(u) for u in rows]))


@blueprint.get(f"{BASE}/users/<user_id>")
def show_user(user_id: str) -> ResponseReturnValue:
    admin_or(user_id)
    with services().db.session() as session:
        return jsonify({"user": user_view(_user(session, user_id))})


@blueprint.patch(f"{BASE}/users/<user_id>")
def update_user(user_id: str) -> ResponseReturnValue:
    me = admin()
    data = parse(UpdateIdentityUser)
    with services().db.session() as session:
        user = _user(session, user_id)
        if "name" in data and _name(data) != user.name:
            if user.name == ADMIN_USER:
                raise Forbidden("the admin user cannot be renamed: Cellar finds it by name")
            _name_free(session, User, _name(data))
            user.name = _name(data)
        for field in ("email", "description"):
            if field in data:
                setattr(user, field, body.text(data, field, required=False, max_len=1024))
        if "default_project_id" in data:
            if data["default_project_id"] is not None:
                _project(session, str(data["default_project_id"]))
            user.default_project_id = data["default_project_id"]
        if "password" in data:
            user.password_hash = hash_password(_password(data["password"]))
            user.password_changed_at = utcnow()
            _revoke_all(session, "user", user.id, "password changed")
        enabled = _flag(data, "enabled")
        if enabled is not None:
            if user.enabled and not enabled:
                if me.user_id == user.id:
                    raise Forbidden("an admin cannot disable their own user")
                _revoke_all(session, "user", user.id, "user disabled")
            user.enabled = enabled
        shown = {k: ("***" if k == "password" else data[k]) for k in data}
        audit.record(
            session, user.default_project_id or "", "identity.user_update", "user", user.id, shown
        )
        return jsonify({"user": user_view(user)})


@blueprint.post(f"{BASE}/users/<user_id>/password")
def change_own_password(user_id: str) -> ResponseReturnValue:
    """``openstack user password set``: a user changes their own password."""
    me = caller()
    if me.user_id != user_id:
        raise Forbidden("only the user may change their password this way; admins PATCH it")
    data = parse(ChangeOwnPassword)
    with services().db.session() as session:
        user = _user(session, user_id)
        if not check_password(str(data.get("original_password") or ""), user.password_hash):
            raise Forbidden("the original password is wrong")
        user.password_hash = hash_password(_password(data.get("password")))
        user.password_changed_at = utcnow()
        _revoke_all(session, "user", user.id, "password changed")
        audit.record(session, me.project_id, "identity.password_change", "user", user.id)
    return Response(status=204)


@blueprint.delete(f"{BASE}/users/<user_id>")
def delete_user(user_id: str) -> ResponseReturnValue:
    me = admin()
    if me.user_id == user_id:
        raise Forbidden("an admin cannot delete their own user")
    with services().db.session() as session:
        user = _user(session, user_id)
        _revoke_all(session, "user", user.id, "user deleted")
        audit.record(
            session,
            user.default_project_id or "",
            "identity.user_delete",
            "user",
            user.id,
            {"name": user.name},
        )
        session.delete(user)
    return Response(status=204)


@blueprint.get(f"{BASE}/users/<user_id>/projects")
def user_projects(user_id: str) -> ResponseReturnValue:
    admin_or(user_id)
    with services().db.session() as session:
        _user(session, user_id)
        views = [project_view(p) for p in store.projects_of(session, user_id)]
    return jsonify(collection("projects", views))
