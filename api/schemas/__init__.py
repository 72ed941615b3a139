"""Request bodies as pydantic models, one module per resource, and ``parse``, the first
check of every route's body.

``BODIES`` maps each route that reads a body, as ``(method, rule)``, to the model of that
body; each module fills its part next to its models. ``api.openapi`` builds the API's
document from it, and from ``queries.QUERIES`` for the query parameters. A model says
what its route takes today; the route's own checks (is the flavor offered, is the name
reserved, is the number in range) come after it.
"""

from __future__ import annotations

from api.schemas import (
    backups,
    configurations,
    credentials,
    databases,
    engine_logs,
    identity,
    instances,
    quotas,
    root,
)
from api.schemas.base import Request
from api.schemas.refusal import parse

BODIES: dict[tuple[str, str], type[Request]] = {
    **instances.BODIES,
    **databases.BODIES,
    **root.BODIES,
    **backups.BODIES,
    **configurations.BODIES,
    **engine_logs.BODIES,
    **credentials.BODIES,
    **quotas.BODIES,
    **identity.BODIES,
}

__all__ = ["BODIES", "Request", "parse"]
