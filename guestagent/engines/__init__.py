"""The engines the guest agent can run, by datastore name (``--engine``).

``ENGINES`` names each engine's class by its module, and :func:`engine_class` imports
only the one asked for: an agent starts faster without the other engines' drivers.
"""

from __future__ import annotations

import importlib

from guestagent.engines.base import Engine

ENGINES: dict[str, str] = {
    "mariadb": "guestagent.engines.mariadb:MariadbEngine",
    "postgresql": "guestagent.engines.postgres:PostgresEngine",
    "redis": "guestagent.engines.redis:RedisEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The class of the engine ``name`` (one of ``ENGINES``), imported now."""
    module_name, _, class_name = ENGINES[name].partition(":")
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, Engine)):
        raise TypeError(f"{ENGINES[name]} is not an Engine")
    return found
