"""Who may use which identity route: the management routes are for admins (the admin
role on the admin project); a user may see themselves, change their own password and
keep their own application credentials."""

from __future__ import annotations

from flask import g

from api import auth
from cellar.errors import Forbidden, Unauthorized
from cellar.identity.store import Identity


def caller() -> Identity:
    """The identity of the request's token (every identity route but the login has one)."""
    found: Identity | None = g.get("identity")
    if found is None:
        raise Unauthorized("this route needs a token in X-Auth-Token")
    return found


def is_admin(identity: Identity) -> bool:
    return auth.current().is_admin(identity)


def admin() -> Identity:
    """The caller, who must be an admin."""
    identity = caller()
    if not is_admin(identity):
        raise Forbidden(
            "managing projects, users and roles needs the admin role on the admin project"
        )
    return identity


def admin_or(user_id: str) -> Identity:
    """The caller, who must be ``user_id`` or an admin."""
    identity = caller()
    if identity.user_id != user_id and not is_admin(identity):
        raise Forbidden("a user may do this only for themselves, or an admin for anyone")
    return identity
