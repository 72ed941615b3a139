"""The body of ``POST /instances/{id}/root``: Trove's optional password of the superuser."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, model_validator

from api.schemas.base import Body, Request

CHOSEN = 'a password of at most 128 characters; null or "" for a new random one'


class RootPassword(Body):
    """The superuser's password."""

    password: StrictStr | None = Field(None, description=CHOSEN)


class EnableRoot(Request):
    """``POST /instances/{id}/root``; the body may be left out (a random password)."""

    optional = True

    password: StrictStr | None = Field(None, description=CHOSEN)
    root: RootPassword | None = None

    @model_validator(mode="before")
    @classmethod
    def _chosen(cls, data: Any) -> Any:
        """The route reads ``root`` only as an object, and then its ``password`` before the
        body's own."""
        if not isinstance(data, dict):
            return data
        root = data.get("root")
        if not isinstance(root, dict):
            return {k: v for k, v in data.items() if k != "root"}
        if "password" in root:
            return {k: v for k, v in data.items() if k != "password"}
        return data


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/root"): EnableRoot,
}
