"""How the identity API's resources look on the wire: Keystone v3's shapes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request

from cellar.identity.models import (
    DOMAIN_ID,
    DOMAIN_NAME,
    ApplicationCredential,
    Project,
    Role,
    User,
)

BASE = "/identity/v3"
DOMAIN = {"id": DOMAIN_ID, "name": DOMAIN_NAME}


def url(path: str) -> str:
    return request.host_url.rstrip("/") + BASE + path


def stamp(value: dt.datetime | None) -> str | None:
    """Keystone's times: ISO 8601 with microseconds and a Z."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def collection(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: items, "links": {"self": request.url, "previous": None, "next": None}}


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "enabled": project.enabled,
        "domain_id": project.domain_id,
        "parent_id": project.domain_id,
        "is_domain": False,
        "tags": [],
        "options": {},
        "links": {"self": url(f"/projects/{project.id}")},
    }


def user_view(user: User) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": user.id,
        "name": user.name,
        "domain_id": user.domain_id,
        "enabled": user.enabled,
        "password_expires_at": None,
        "options": {},
        "links": {"self": url(f"/users/{user.id}")},
    }
    for field in ("default_project_id", "email"):
        if getattr(user, field):
            view[field] = getattr(user, field)
    if user.description:
        view["description"] = user.description
    return view


def role_view(role: Role) -> dict[str, Any]:
    return {
        "id": role.id,
        "name": role.name,
        "domain_id": None,
        "description": role.description,
        "options": {},
        "links": {"self": url(f"/roles/{role.id}")},
    }


def domain_view() -> dict[str, Any]:
    return {
        **DOMAIN,
        "description": "The only domain of Cellar's identity API",
        "enabled": True,
        "tags": [],
        "options": {},
        "links": {"self": url(f"/domains/{DOMAIN_ID}")},
    }


def credential_view(
    credential: ApplicationCredential, roles: list[Role], secret: str | None = None
) -> dict[str, Any]:
    cid = credential.id
    view: dict[str, Any] = {
        "id": cid,
        "name": credential.name,
        "description": credential.description,
        "user_id": credential.user_id,
        "project_id": credential.project_id,
        "expires_at": stamp(credential.expires_at),
        "unrestricted": credential.unrestricted,
        "roles": [{"id": r.id, "name": r.name, "domain_id": None} for r in roles],
        "access_rules": [],
        "links": {
            "self": url(f"/users/{credential.user_id}/application_credentials/{credential.id}")
        },
    }
    if secret is not None:
        view["secret"] = secret
    return view
