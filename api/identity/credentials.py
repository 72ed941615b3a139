"""Application credentials: ``openstack application credential create/list/show/delete``.

A user makes them for programs (CI jobs, the dashboard's service): each logs in to the
project of the token that made it, with some or all of the user's roles there, until it
expires or is deleted. Its secret is shown once, at creation; only its hash is kept.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body
from api.identity.access import admin_or, caller
from api.identity.views import BASE, collection, credential_view
from api.schemas import parse
from api.schemas.identity import CreateCredential
from api.state import services
from cellar.errors import Conflict, Forbidden, InvalidInput, NotFound
from cellar.identity import store
from cellar.identity.models import ApplicationCredential, Role
from cellar.identity.passwords import hash_password
from cellar.identity.store import Identity
from cellar.models import utcnow

blueprint = Blueprint("identity_credentials", __name__)

PATH = f"{BASE}/users/<user_id>/application_credentials"


def _roles(session: Session, credential: ApplicationCredential) -> list[Role]:
    return [
        r for r in session.scalars(select(Role).order_by(Role.name)) if r.id in credential.role_ids
    ]


def _expiry(value: object) -> dt.datetime | None:
    if value in (None, ""):
        return None
    moment = body.moment(value, "expires_at")
    if moment <= utcnow():
        raise InvalidInput("expires_at must be in the future")
    return moment


def _chosen_roles(session: Session, asked: object, maker: Identity) -> list[str]:
    """The role ids a new credential gets: those asked for (by id or name), which the
    maker must hold (or hold a role including it); all the maker's roles when none are named."""
    if asked in (None, []):
        return list(maker.role_ids)
    if not isinstance(asked, list):
        raise InvalidInput('roles must be a list such as [{"name": "reader"}]')
    chosen = []
    for item in asked:
        role = None
        if isinstance(item, dict) and item.get("id"):
            role = session.get(Role, str(item["id"]))
        elif isinstance(item, dict) and item.get("name"):
            role = session.scalars(select(Role).where(Role.name == str(item["name"]))).first()
        if role is None:
            raise NotFound(f"no role {item!r}")
        if role.name not in store.implied(maker.roles):
            raise Forbidden(f"a credential may get only roles its maker holds, not {role.name}")
        if role.id not in chosen:
            chosen.append(role.id)
    return chosen


@blueprint.post(PATH)
def create(user_id: str) -> ResponseReturnValue:
    me = caller()
    if me.user_id != user_id:
        raise Forbidden("a user makes application credentials only for themselves")
    if not me.project_id:
        raise Forbidden("make application credentials with a token scoped to their project")
    if me.app_credential_id:
        raise Forbidden("an application credential cannot make another one")
    data = parse(CreateCredential)
    name = body.text(data, "name", max_len=255)
    secret = data.get("secret") or secrets.token_urlsafe(32)
    if not isinstance(secret, str) or len(secret) < 16:
        raise InvalidInput("secret must be a string of at least 16 characters (or left out)")
    with services().db.session() as session:
        taken = session.scalars(
            select(ApplicationCredential).where(
                ApplicationCredential.user_id == user_id, ApplicationCredential.name == name
            )
        ).first()
        if taken is not None:
            raise Conflict(f"you have an application credential named {name!r} already")
        credential = ApplicationCredential(
            user_id=user_id,
            project_id=me.project_id,
            name=name,
            description=body.text(data, "description", required=False, max_len=1024),
            secret_hash=hash_password(secret),
            role_ids=_chosen_roles(session, data.get("roles"), me),
            unrestricted=False,
            expires_at=_expiry(data.get("expires_at")),
        )
        session.add(credential)
        session.flush()
        view = credential_view(credential, _roles(session, credential), secret=secret)
        audit.record(
            session,
            me.project_id,
            "identity.app_credential_create",
            "application_credential",
            credential.id,
            {"name": name},
        )
    return jsonify({"application_credential": view}), 201


@blueprint.get(PATH)
def list_all(user_id: str) -> ResponseReturnValue:
    admin_or(user_id)
    query = select(ApplicationCredential).where(ApplicationCredential.user_id == user_id)
    if request.args.get("name"):
        query = query.where(ApplicationCredential.name == request.args["name"])
    with services().db.session() as session:
        rows = session.scalars(query.order_by(ApplicationCredential.name))
        views: list[dict[str, Any]] = [credential_view(c, _roles(session, c)) for c in rows]
    return jsonify(collection("application_credentials", views))


def _credential(session: Session, user_id: str, credential_id: str) -> ApplicationCredential:
    found = session.get(ApplicationCredential, credential_id)
    if found is None or found.user_id != user_id:
        raise NotFound(f"Could not find application credential: {credential_id}.")
    return found


@blueprint.get(f"{PATH}/<credential_id>")
def show(user_id: str, credential_id: str) -> ResponseReturnValue:
    admin_or(user_id)
    with services().db.session() as session:
        credential = _credential(session, user_id, credential_id)
        return jsonify(
            {"application_credential": credential_view(credential, _roles(session, credential))}
        )


@blueprint.delete(f"{PATH}/<credential_id>")
def delete(user_id: str, credential_id: str) -> ResponseReturnValue:
    me = admin_or(user_id)
    with services().db.session() as session:
        credential = _credential(session, user_id, credential_id)
        until = utcnow() + dt.timedelta(seconds=services().settings.token_ttl)
        store.revoke(session, "app_credential", credential.id, until, by=me.user_id)
        audit.record(
            session,
            credential.project_id,
            "identity.app_credential_delete",
            "application_credential",
            credential.id,
            {"name": credential.name},
        )
        session.delete(credential)
    return Response(status=204)
