"""The body of ``POST /instances/{id}/log``: Trove's log actions on one engine log."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr

from api.schemas.base import Request

ASKS = "1 or true to ask for it (0, false or null: not)"


class LogAction(Request):
    """Show a log, and publish what it gained to backup storage or discard what was
    published; ``enable`` and ``disable`` are refused (the engine's logs are always on)."""

    closed = True
    route_requires = ("name",)

    name: StrictStr | None = Field(None, description="a log's name (GET .../log lists them)")
    enable: Any = Field(None, description=ASKS)
    disable: Any = Field(None, description=ASKS)
    publish: Any = Field(None, description=ASKS)
    discard: Any = Field(None, description=ASKS)


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", "/v1.0/<project_id>/instances/<instance_id>/log"): LogAction,
}
