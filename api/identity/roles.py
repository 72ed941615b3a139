"""Roles and who has them where: ``openstack role list``, ``role add/remove --project
--user``, ``role assignment list``. The roles are Cellar's three: reader, member, admin."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.identity.access import admin, caller, is_admin
from api.identity.views import BASE, DOMAIN, collection, role_view, url
from api.state import services
from cellar.errors import Forbidden, NotFound
from cellar.identity.models import Project, Role, RoleAssignment, User

blueprint = Blueprint("identity_roles", __name__)

ASSIGNMENT = f"{BASE}/projects/<project_id>/users/<user_id>/roles/<role_id>"


def _role(session: Session, role_id: str) -> Role:
    found = (
        session.get(Role, role_id)
        or session.scalars(select(Role).where(Role.name == role_id)).first()
    )
    if found is None:
        raise NotFound(f"Could not find role: {role_id}.")
    return found


def _pair(session: Session, project_id: str, user_id: str) -> tuple[Project, User]:
    project, user = session.get(Project, project_id), session.get(User, user_id)
    if project is None:
        raise NotFound(f"Could not find project: {project_id}.")
    if user is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return project, user


@blueprint.get(f"{BASE}/roles")
def list_roles() -> ResponseReturnValue:
    caller()
    query = select(Role).order_by(Role.name)
    if request.args.get("name"):
        query = query.where(Role.name == request.args["name"])
    with services().db.session() as session:
        return jsonify(collection("roles", [role_view(r) for r in session.scalars(query)]))


@blueprint.get(f"{BASE}/roles/<role_id>")
def show_role(role_id: str) -> ResponseReturnValue:
    caller()
    with services().db.session() as session:
        found = session.get(Role, role_id)
        if found is None:
            raise NotFound(f"Could not find role: {role_id}.")
        return jsonify({"role": role_view(found)})


@blueprint.put(ASSIGNMENT)
def grant(project_id: str, user_id: str, role_id: str) -> ResponseReturnValue:
    admin()
    with services().db.session() as session:
        project, user = _pair(session, project_id, user_id)
        role = _role(session, role_id)
        if session.get(RoleAssignment, (user.id, project.id, role.id)) is None:
            session.add(RoleAssignment(user_id=user.id, project_id=project.id, role_id=role.id))
            audit.record(
                session,
                project.id,
                "identity.role_grant",
                "user",
                user.id,
                {"role": role.name, "user": user.name},
            )
    return Response(status=204)


@blueprint.delete(ASSIGNMENT)
def revoke(project_id: str, user_id: str, role_id: str) -> ResponseReturnValue:
    me = admin()
    with services().db.session() as session:
        project, user = _pair(session, project_id, user_id)
        role = _role(session, role_id)
        found = session.get(RoleAssignment, (user.id, project.id, role.id))
        if found is None:
            raise NotFound(f"user {user.name} has no role {role.name} on project {project.name}")
        if me.user_id == user.id and project.id == me.project_id and role.name == "admin":
            raise Forbidden("an admin cannot take the admin role from themselves")
        session.delete(found)
        audit.record(
            session,
            project.id,
            "identity.role_revoke",
            "user",
            user.id,
            {"role": role.name, "user": user.name},
        )
    return Response(status=204)


@blueprint.route(ASSIGNMENT, methods=["GET", "HEAD"])
def has_role(project_id: str, user_id: str, role_id: str) -> ResponseReturnValue:
    me = caller()
    if me.user_id != user_id and not is_admin(me):
        raise Forbidden("a user may check only their own roles")
    with services().db.session() as session:
        _pair(session, project_id, user_id)
        role = _role(session, role_id)
        if session.get(RoleAssignment, (user_id, project_id, role.id)) is None:
            raise NotFound("the user has no such role on that project")
    return Response(status=204)


@blueprint.get(f"{BASE}/projects/<project_id>/users/<user_id>/roles")
def roles_of(project_id: str, user_id: str) -> ResponseReturnValue:
    me = caller()
    if me.user_id != user_id and not is_admin(me):
        raise Forbidden("a user may list only their own roles")
    with services().db.session() as session:
        _pair(session, project_id, user_id)
        rows = session.scalars(
            select(Role)
            .join(RoleAssignment, RoleAssignment.role_id == Role.id)
            .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)
            .order_by(Role.name)
        )
        return jsonify(collection("roles", [role_view(r) for r in rows]))


@blueprint.get(f"{BASE}/role_assignments")
def list_assignments() -> ResponseReturnValue:
    """Filtered by ``user.id``, ``scope.project.id`` and ``role.id``; with
    ``include_names``, each names its user, project and role."""
    me = caller()
    args = request.args
    query = (
        select(RoleAssignment, User, Project, Role)
        .join(User, User.id == RoleAssignment.user_id)
        .join(Project, Project.id == RoleAssignment.project_id)
        .join(Role, Role.id == RoleAssignment.role_id)
        .order_by(Project.name, User.name, Role.name)
    )
    if not is_admin(me):
        if args.get("user.id") not in (None, me.user_id):
            raise Forbidden("a user may list only their own role assignments")
        query = query.where(RoleAssignment.user_id == me.user_id)
    for arg, column in (
        ("user.id", RoleAssignment.user_id),
        ("scope.project.id", RoleAssignment.project_id),
        ("role.id", RoleAssignment.role_id),
    ):
        if args.get(arg):
            query = query.where(column == args[arg])
    names = args.get("include_names") not in (None, "0", "false", "False")
    with services().db.session() as session:
        shown = [_assignment(u, p, r, names) for _a, u, p, r in session.execute(query)]
    return jsonify(collection("role_assignments", shown))


def _assignment(user: User, project: Project, role: Role, names: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "role": {"id": role.id},
        "user": {"id": user.id},
        "scope": {"project": {"id": project.id}},
        "links": {"assignment": url(f"/projects/{project.id}/users/{user.id}/roles/{role.id}")},
    }
    if names:
        view["role"]["name"] = role.name
        view["user"].update(name=user.name, domain=DOMAIN)
        view["scope"]["project"].update(name=project.name, domain=DOMAIN)
    return view
