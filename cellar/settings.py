"""Cellar's settings, read once from the environment.

With no configuration at all Cellar runs in its embedded profile: metadata in
SQLite under ``CELLAR_HOME`` and a Celery broker on the local file system, so one
machine with Docker is enough. Production points ``CELLAR_DATABASE_URL`` at
PostgreSQL and ``CELLAR_BROKER_URL`` at RabbitMQ or Redis.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclasses.dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    api_host: str
    api_port: int
    publish_host: str
    advertise_host: str
    image_prefix: str
    build_deadline: float
    delete_deadline: float
    agent_call_timeout: float
    step_lease: float
    health_grace: float

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith(("filesystem://", "cellarfs://"))

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"


def load() -> Settings:
    """Read the settings from the environment (call again after changing it)."""
    home = Path(_env("CELLAR_HOME", str(Path.home() / ".cellar"))).expanduser()
    publish_host = _env("CELLAR_PUBLISH_HOST", "127.0.0.1")
    return Settings(
        home=home,
        database_url=_env("CELLAR_DATABASE_URL", f"sqlite:///{home / 'cellar.db'}"),
        broker_url=_env("CELLAR_BROKER_URL", "filesystem://"),
        api_host=_env("CELLAR_API_HOST", "127.0.0.1"),
        api_port=int(_float("CELLAR_API_PORT", 8779)),
        publish_host=publish_host,
        advertise_host=_env(
            "CELLAR_ADVERTISE_HOST",
            "127.0.0.1" if publish_host in ("0.0.0.0", "::") else publish_host,  # noqa: S104
        ),
        image_prefix=_env("CELLAR_IMAGE_PREFIX", "cellar"),
        build_deadline=_float("CELLAR_BUILD_DEADLINE", 300.0),
        delete_deadline=_float("CELLAR_DELETE_DEADLINE", 120.0),
        agent_call_timeout=_float("CELLAR_AGENT_TIMEOUT", 30.0),
        step_lease=_float("CELLAR_STEP_LEASE", 60.0),
        health_grace=_float("CELLAR_HEALTH_GRACE", 20.0),
    )
