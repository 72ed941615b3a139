"""Bodies of ``/configurations``: create a group, replace (``PUT``) or merge (``PATCH``)
its values. Each value is checked against its parameter's rule by the route."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr

from api.schemas.base import Body, Request
from api.schemas.instances import Datastore

BASE = "/v1.0/<project_id>/configurations"
VALUES = 'an object {"parameter": value, ...} (GET .../parameters lists them)'
DESCRIPTION = "a text of at most 1024 characters"


class NewConfiguration(Body):
    """A named parameter set for one datastore version."""

    blank_is_unset = ("values",)

    name: StrictStr = Field(max_length=255)
    description: StrictStr | None = Field(None, max_length=1024, description=DESCRIPTION)
    datastore: Datastore | None = None
    values: dict[str, Any] | None = Field(None, description=VALUES)


class CreateConfiguration(Request):
    """``POST /configurations``."""

    wrapper = "configuration"

    configuration: NewConfiguration


class ReplacedValues(Body):
    """The group's values, all of them, and a new name or description."""

    name: StrictStr | None = Field(None, max_length=255)
    description: StrictStr | None = Field(None, max_length=1024, description=DESCRIPTION)
    values: dict[str, Any] = Field(description=VALUES)


class ReplaceConfiguration(Request):
    """``PUT /configurations/{id}``: the values replace the group's."""

    wrapper = "configuration"

    configuration: ReplacedValues


class MergedValues(Body):
    """Values to set in the group; those left out stay as they are."""

    values: dict[str, Any] = Field(description=VALUES)


class EditConfiguration(Request):
    """``PATCH /configurations/{id}``: the values are merged into the group's."""

    wrapper = "configuration"

    configuration: MergedValues


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", BASE): CreateConfiguration,
    ("PUT", f"{BASE}/<config_id>"): ReplaceConfiguration,
    ("PATCH", f"{BASE}/<config_id>"): EditConfiguration,
}
