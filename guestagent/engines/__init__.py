"""The engines the guest agent can run, by datastore name (``--engine``)."""

from __future__ import annotations

from guestagent.engines.base import Engine
from guestagent.engines.postgres import PostgresEngine

ENGINES: dict[str, type[Engine]] = {
    "postgresql": PostgresEngine,
}
