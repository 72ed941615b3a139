"""Bodies of an instance's ``/databases`` and ``/users``: create them, change passwords,
grant access (Trove's routes, and openstacksdk's one-object forms)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, StrictStr, model_validator

from api.schemas.base import Body, Request, documented, optional

BASE = "/v1.0/<project_id>/instances/<instance_id>"
MAX_ITEMS = 50
HOST = "a host such as '%' or '10.0.0.%' (MariaDB; other engines take only '%')"


class DatabaseName(Body):
    """A database, by name."""

    name: StrictStr


class NewDatabase(Body):
    """A database to make, with Trove's optional character set and collation."""

    name: StrictStr
    character_set: StrictStr | None = None
    collate: StrictStr | None = None


class NewUser(Body):
    """A user to make, its client host and the databases it may use."""

    blank_is_unset = ("host", "databases")

    name: StrictStr
    password: StrictStr
    host: StrictStr | None = Field(None, description=HOST)
    databases: list[DatabaseName] | None = None


class PathUser(NewUser):
    """The user of ``POST /users/{name}``: its name is the path's (the body may repeat it)."""

    name: StrictStr = optional()


class PasswordChange(Body):
    """A user's new password."""

    closed = True
    blank_is_unset = ("host",)

    name: StrictStr
    password: StrictStr
    host: StrictStr | None = Field(None, description=HOST)


def either(plural: str) -> dict[str, Any]:
    """For the document: the body holds the plural, or the singular."""
    return {"anyOf": [{"required": [plural]}, {"required": [plural.removesuffix("s")]}]}


class Listed(Request):
    """A list under its plural, ``{"databases": [...]}``, or one object under it or under its
    singular, as openstacksdk sends (``{"database": {...}}``); the singular is read only
    when the plural is left out."""

    plural: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.plural in data:
            return {k: v for k, v in data.items() if k != cls.plural.removesuffix("s")}
        return data


class CreateDatabases(Listed):
    """``POST /instances/{id}/databases``."""

    plural = "databases"
    schema_extra = either("databases")

    databases: list[NewDatabase] | NewDatabase = documented(minItems=1, maxItems=MAX_ITEMS)
    database: NewDatabase = optional()


class CreateUsers(Listed):
    """``POST /instances/{id}/users``."""

    plural = "users"
    schema_extra = either("users")

    users: list[NewUser] | NewUser = documented(minItems=1, maxItems=MAX_ITEMS)
    user: NewUser = optional()


class CreatePathUser(Listed):
    """``POST /instances/{id}/users/{name}``: that one user."""

    plural = "users"
    schema_extra = either("users")

    users: list[PathUser] | PathUser = documented(minItems=1, maxItems=1)
    user: PathUser = optional()


class ChangePasswords(Listed):
    """``PUT /instances/{id}/users``: Trove's password change."""

    plural = "users"
    schema_extra = either("users")

    users: list[PasswordChange] | PasswordChange = documented(minItems=1, maxItems=MAX_ITEMS)
    user: PasswordChange = optional()


class UserChange(Body):
    """A user's new password; a name or host, if given, must be the user's own."""

    closed = True

    name: StrictStr | None = None
    host: StrictStr | None = None
    password: StrictStr


class UpdateUser(Request):
    """``PUT /instances/{id}/users/{name}``."""

    wrapper = "user"

    user: UserChange


class GrantAccess(Listed):
    """``PUT /instances/{id}/users/{name}/databases``: every right on these databases."""

    plural = "databases"
    schema_extra = either("databases")

    databases: list[DatabaseName] | DatabaseName = documented(minItems=1, maxItems=MAX_ITEMS)
    database: DatabaseName = optional()


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", f"{BASE}/databases"): CreateDatabases,
    ("POST", f"{BASE}/users"): CreateUsers,
    ("POST", f"{BASE}/users/<user>"): CreatePathUser,
    ("PUT", f"{BASE}/users"): ChangePasswords,
    ("PUT", f"{BASE}/users/<user>"): UpdateUser,
    ("PUT", f"{BASE}/users/<user>/databases"): GrantAccess,
}
