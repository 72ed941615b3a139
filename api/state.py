"""What the API works with, and access to it from a request.

The API writes rows and reads them; it starts work only through task rows
(``cellar.tasks``) and the queue (``cellar.queue``), and its only calls to agents are
the live reads a user asks for, through ``cellar.agent_reads``. It builds no Docker
driver and imports nothing of the task manager.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from flask import current_app

from cellar.agent_reads import ReadPool
from cellar.db import Database
from cellar.models import Instance
from cellar.pki import ClientTls
from cellar.secrets import SecretBox
from cellar.settings import Settings
from cellar.tasks import Enqueue


class LiveReads(Protocol):
    """An agent's answers to the reads the API makes live."""

    def list_databases(self) -> list[dict[str, str]]: ...

    def list_users(self) -> list[dict[str, Any]]: ...

    def list_logs(self) -> list[dict[str, Any]]: ...

    def tail_log(self, name: str, lines: int) -> Sequence[str]: ...


class Services(Protocol):
    """What a request handler needs; tests give the task manager's own services, or fakes."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def secrets(self) -> SecretBox: ...

    @property
    def enqueue(self) -> Enqueue: ...

    @property
    def agent_for(self) -> Callable[[Instance], LiveReads]: ...


@dataclasses.dataclass(frozen=True)
class ApiServices:
    settings: Settings
    db: Database
    secrets: SecretBox
    enqueue: Enqueue
    agent_for: Callable[[Instance], LiveReads]


def build(settings: Settings) -> ApiServices:
    """The API process's services, from the settings."""
    from cellar import queue

    return ApiServices(
        settings=settings,
        db=Database(settings.database_url),
        secrets=SecretBox.from_home(settings.home),
        enqueue=queue.enqueue,
        agent_for=ReadPool(ClientTls.from_home(settings.home), settings.agent_call_timeout),
    )


def services() -> Services:
    """The services of the app that handles the current request."""
    found: Services = current_app.extensions["cellar"]
    return found
