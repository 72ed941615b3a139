"""An instance's network access, as ``instances.access`` stores it (Trove's ``access``).

``is_public``: the engine port is published on ``CELLAR_PUBLIC_HOST`` (every address of
the host by default) instead of ``CELLAR_PUBLISH_HOST`` (loopback by default).
``allowed_cidrs``: the source networks that may connect; empty means any source, as in
Trove. A row with no access (an instance made before access existed) is private and
unrestricted. The API checks what it stores (``api.access``); the task manager checks
it again before any of it reaches the firewall.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CIDR_TEXT = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?\Z")


def network(value: object) -> Network:
    """``value`` as a network (a bare address is a network of one host); ValueError says
    what is wrong with it."""
    if not isinstance(value, str) or not CIDR_TEXT.match(value):
        raise ValueError(f"{value!r} is not a network in CIDR notation, like 10.0.0.0/24")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR notation: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Access:
    is_public: bool = False
    allowed_cidrs: tuple[str, ...] = ()

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Access:
        """The access a row holds (the defaults for none)."""
        if not stored:
            return cls()
        cidrs = stored.get("allowed_cidrs") or ()
        return cls(stored.get("is_public") is True, tuple(str(c) for c in cidrs))

    def stored(self) -> dict[str, Any]:
        """The row's JSON, which is also how the API shows it."""
        return {"is_public": self.is_public, "allowed_cidrs": list(self.allowed_cidrs)}
