"""Bodies of Cellar's own identity API (Keystone v3): log in, projects, users, passwords
and application credentials. The role routes take no body: the path says it all."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictStr

from api.schemas.base import Body, Request, documented, optional
from cellar import names

V3 = "/identity/v3"
NAME = "a name of at most 64 characters, with no '/' and no spaces at its ends"
TEXT = "a text of at most 1024 characters"
PASSWORD = f"a password of at most {names.PASSWORD_MAX} characters"
DOMAIN = 'the one domain, "default"'


class LoginIdentity(Body):
    """Who logs in: one of the methods, and that method's part."""

    methods: list[Any] = Field(
        description='a list naming one of "password", "token", "application_credential"'
    )
    password: Any = Field(
        None, description='{"user": {"name" (with "domain") or "id", "password"}}'
    )
    token: Any = Field(None, description='{"id": "<a valid token>"}, for a token of another scope')
    application_credential: Any = Field(
        None, description='{"id", "secret"}, or {"name", "user", "secret"}'
    )


class Auth(Body):
    """A login and the project the token is for."""

    identity: LoginIdentity
    scope: Any = Field(
        None,
        description='{"project": {"id"} or {"name", "domain"}}, or "unscoped"; '
        "left out, the user's default project",
    )


class LogIn(Request):
    """``POST /identity/v3/auth/tokens``: the token comes back in ``X-Subject-Token``."""

    wrapper = "auth"

    auth: Auth


class NewProject(Body):
    """A project."""

    name: StrictStr = Field(max_length=64, description=NAME)
    description: StrictStr | None = Field(None, max_length=1024, description=TEXT)
    enabled: StrictBool | None = None
    domain_id: Literal["default"] | None = Field(None, description=DOMAIN)


class CreateProject(Request):
    """``POST /identity/v3/projects`` (admins)."""

    wrapper = "project"

    project: NewProject


class ProjectChanges(Body):
    """A project's new name, description, or whether it is enabled."""

    name: StrictStr = optional(max_length=64, description=NAME)
    description: StrictStr | None = Field(None, max_length=1024, description=TEXT)
    enabled: StrictBool | None = None


class UpdateProject(Request):
    """``PATCH /identity/v3/projects/{id}`` (admins)."""

    wrapper = "project"

    project: ProjectChanges


class IdentityUser(Body):
    """A user; without a password it cannot log in until one is set."""

    name: StrictStr = Field(max_length=64, description=NAME)
    password: StrictStr = documented(description=PASSWORD, maxLength=names.PASSWORD_MAX)
    enabled: StrictBool | None = None
    email: StrictStr | None = Field(None, max_length=255, description="an address")
    description: StrictStr | None = Field(None, max_length=1024, description=TEXT)
    default_project_id: Any = Field(None, description="a project's id")
    domain_id: Literal["default"] | None = Field(None, description=DOMAIN)


class CreateIdentityUser(Request):
    """``POST /identity/v3/users`` (admins)."""

    wrapper = "user"

    user: IdentityUser


class IdentityUserChanges(Body):
    """A user's new name, password, e-mail, description, default project, or whether it is
    enabled; a new password or disabling revokes the user's tokens."""

    name: StrictStr = optional(max_length=64, description=NAME)
    password: StrictStr = documented(description=PASSWORD, maxLength=names.PASSWORD_MAX)
    enabled: StrictBool | None = None
    email: StrictStr | None = Field(None, max_length=1024, description="an address")
    description: StrictStr | None = Field(None, max_length=1024, description=TEXT)
    default_project_id: Any = Field(None, description="a project's id, or null for none")


class UpdateIdentityUser(Request):
    """``PATCH /identity/v3/users/{id}`` (admins)."""

    wrapper = "user"

    user: IdentityUserChanges


class OwnPasswordChange(Body):
    """The user's password now, and the new one."""

    route_requires = ("original_password",)  # without it, the password is wrong: 403

    original_password: Any = Field(None, description="the user's password now")
    password: StrictStr = documented(..., description=PASSWORD, maxLength=names.PASSWORD_MAX)


class ChangeOwnPassword(Request):
    """``POST /identity/v3/users/{id}/password``: a user changes their own password."""

    wrapper = "user"

    user: OwnPasswordChange


class NewCredential(Body):
    """An application credential: it logs in to the project of the token that made it,
    with the roles named (some of the maker's) or all the maker's roles there."""

    blank_is_unset = ("secret",)

    name: StrictStr = Field(max_length=255)
    description: StrictStr | None = Field(None, max_length=1024, description=TEXT)
    secret: StrictStr | None = Field(
        None, description="a secret of at least 16 characters; left out, a random one"
    )
    roles: list[Any] | None = Field(
        None, description='a list of roles such as [{"name": "reader"}] or [{"id": ...}]'
    )
    expires_at: StrictStr | None = Field(
        None, description="an RFC 3339 time in the future, e.g. 2026-11-25T09:30:00Z"
    )


class CreateCredential(Request):
    """``POST /identity/v3/users/{id}/application_credentials``: for the caller only."""

    wrapper = "application_credential"

    application_credential: NewCredential


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", f"{V3}/auth/tokens"): LogIn,
    ("POST", f"{V3}/projects"): CreateProject,
    ("PATCH", f"{V3}/projects/<project_id>"): UpdateProject,
    ("POST", f"{V3}/users"): CreateIdentityUser,
    ("PATCH", f"{V3}/users/<user_id>"): UpdateIdentityUser,
    ("POST", f"{V3}/users/<user_id>/password"): ChangeOwnPassword,
    ("POST", f"{V3}/users/<user_id>/application_credentials"): CreateCredential,
}
