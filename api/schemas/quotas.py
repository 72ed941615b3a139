"""The body of ``PUT /mgmt/quotas/{project}``: some of a project's limits."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt

from api.schemas.base import Body, Request
from cellar.quotas import MAX_LIMIT, UNLIMITED

LIMIT = f"an integer from {UNLIMITED} (no limit) to {MAX_LIMIT}, or null to leave it as it is"


def _limit() -> Any:
    """A limit; the route checks its range, and says what was given."""
    return Field(
        None, description=LIMIT, json_schema_extra={"minimum": UNLIMITED, "maximum": MAX_LIMIT}
    )


class Limits(Body):
    """The limits to set; at least one."""

    closed = True
    schema_extra = {"minProperties": 1}

    instances: StrictInt | None = _limit()
    backups: StrictInt | None = _limit()
    volumes: StrictInt | None = _limit()
    ram: StrictInt | None = _limit()


class SetQuotas(Request):
    """``PUT /mgmt/quotas/{project}`` (admins)."""

    wrapper = "quotas"

    quotas: Limits


BODIES: dict[tuple[str, str], type[Request]] = {
    ("PUT", "/v1.0/<project_id>/mgmt/quotas/<target>"): SetQuotas,
}
