"""Trove's ``access`` object of an instance create or update, checked before it is stored.

``{"is_public": false, "allowed_cidrs": ["10.0.0.0/24", "192.168.1.7"]}``: both keys are
optional. ``is_public`` chooses the host address the engine port is published on, so it is
fixed when the instance is made; an update may repeat it but not change it. Networks are
kept in the form ``ipaddress`` writes them, without repeats.
"""

from __future__ import annotations

from collections.abc import Mapping

from cellar import access
from cellar.access import Access
from cellar.errors import Conflict, InvalidInput

MAX_CIDRS = 50
KEYS = {"is_public", "allowed_cidrs"}


def requested(data: Mapping[str, object], current: Access | None = None) -> Access:
    """The access that a create (``current`` None) or update body's ``access`` asks for;
    what an update leaves out stays as it was."""
    raw = data.get("access")
    if not isinstance(raw, dict) or set(raw) - KEYS:
        raise InvalidInput(
            'access must be an object like {"is_public": false, "allowed_cidrs": ["10.0.0.0/24"]}'
        )
    before = current or Access()
    is_public = raw.get("is_public", before.is_public)
    if not isinstance(is_public, bool):
        raise InvalidInput("access.is_public must be true or false")
    if current is not None and is_public != current.is_public:
        raise Conflict(
            "access.is_public is chosen when the instance is created and cannot change; "
            "restore a backup into a new instance to publish it differently"
        )
    cidrs = raw.get("allowed_cidrs", list(before.allowed_cidrs))
    if not isinstance(cidrs, list):
        raise InvalidInput("access.allowed_cidrs must be a list of networks like 10.0.0.0/24")
    if len(cidrs) > MAX_CIDRS:
        raise InvalidInput(f"access.allowed_cidrs takes at most {MAX_CIDRS} networks")
    networks: list[str] = []
    for value in cidrs:
        try:
            networks.append(str(access.network(value)))
        except ValueError as exc:
            raise InvalidInput(f"access.allowed_cidrs: {exc}") from exc
    return Access(is_public, tuple(dict.fromkeys(networks)))
