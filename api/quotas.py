"""Quotas through Trove's routes: a project's ``/limits``, and the admin's
``/mgmt/quotas/{project}`` to read and set any project's limits.

``/mgmt`` paths need the admin role on the admin project (``api.auth``). Limits are
counted and enforced by ``cellar.quotas``; these routes only show and set them.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api import audit
from api.schemas import parse
from api.schemas.quotas import SetQuotas
from api.state import services
from cellar import quotas
from cellar.errors import InvalidInput, NotFound
from cellar.identity.models import Project
from cellar.models import ProjectQuota
from cellar.quotas import MAX_LIMIT, UNLIMITED, Resource

blueprint = Blueprint("quotas", __name__)

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAMES = ", ".join(r.value for r in Resource)


@blueprint.get("/v1.0/<project_id>/limits")
def limits(project_id: str) -> ResponseReturnValue:
    """Trove's limits: one ABSOLUTE entry with ``max_<resource>``, and Cellar's
    ``total_<resource>_used`` beside it. Cellar has no rate limits to list."""
    svc = services()
    with svc.db.session() as session:
        found = quotas.project_quotas(session, svc.settings, project_id)
    absolute: dict[str, Any] = {"verb": "ABSOLUTE"}
    absolute.update({f"max_{q.resource}": q.limit for q in found})
    absolute.update({f"total_{q.resource}_used": q.in_use for q in found})
    return jsonify({"limits": [absolute]})


@blueprint.get("/v1.0/<project_id>/mgmt/quotas/<target>")
def show(project_id: str, target: str) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        target = _project(session, target)
        found = quotas.project_quotas(session, svc.settings, target)
    return jsonify(
        {
            "quotas": [
                {"resource": q.resource.value, "in_use": q.in_use, "reserved": 0, "limit": q.limit}
                for q in found
            ]
        }
    )


@blueprint.put("/v1.0/<project_id>/mgmt/quotas/<target>")
def update(project_id: str, target: str) -> ResponseReturnValue:
    """Set some of a project's limits (-1: no limit); null leaves one as it is."""
    wanted = _limits(parse(SetQuotas))
    svc = services()
    with svc.db.session() as session:
        target = _project(session, target)
        for resource, limit in wanted.items():
            row = session.get(ProjectQuota, (target, resource.value))
            if row is None:
                row = ProjectQuota(project_id=target, resource=resource.value, hard_limit=limit)
                session.add(row)
            else:
                row.hard_limit = limit
        changed = {r.value: limit for r, limit in wanted.items()}
        audit.record(session, target, "quota.update", "project", target, {"quotas": changed})
    return jsonify({"quotas": changed})


def _limits(data: dict[str, Any]) -> dict[Resource, int]:
    """The limits a PUT sets: known resources, integers from -1 up."""
    known = {r.value for r in Resource}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown quota resource {unknown[0]!r}; resources are {NAMES}")
    wanted: dict[Resource, int] = {}
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"the quota of {name} must be an integer (-1 for no limit), not {value!r}"
            )
        if not UNLIMITED <= value <= MAX_LIMIT:
            raise InvalidInput(
                f"the quota of {name} must be from {UNLIMITED} (no limit) to {MAX_LIMIT}, "
                f"got {value}"
            )
        wanted[Resource(name)] = value
    if not wanted:
        raise InvalidInput(
            f'name at least one quota to set, e.g. {{"quotas": {{"instances": 5}}}}; '
            f"resources are {NAMES}"
        )
    return wanted


def _project(session: Session, given: str) -> str:
    """The id of the project ``given`` names (its id, or with Cellar's own identity API
    its name too); 404 when Cellar's identity knows no such project."""
    if not PROJECT_ID.fullmatch(given):
        raise InvalidInput("a project id is 1 to 64 letters, digits, underscores or hyphens")
    if not services().settings.own_identity:
        return given  # a Keystone holds the projects: any well-formed id may have quotas
    found = session.scalars(
        select(Project.id).where(or_(Project.id == given, Project.name == given))
    ).all()
    if given in found:
        return given
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} projects are named {given}; give the project's id")
    if not found:
        raise NotFound(f"project {given} does not exist")
    return found[0]
