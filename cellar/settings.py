"""Cellar's settings, read once from the environment.

With no configuration at all Cellar runs in its embedded profile: metadata in
SQLite under ``CELLAR_HOME`` and a Celery broker on the local file system, so one
machine with Docker is enough. Production points ``CELLAR_DATABASE_URL`` at
PostgreSQL and ``CELLAR_BROKER_URL`` at RabbitMQ or Redis, and may keep backups in an
S3-compatible bucket with ``CELLAR_BACKUP_URL=s3://bucket/prefix``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VOLUME_BACKENDS = ("loop", "docker")
LOOP_TOOLS = ("losetup", "mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount")
SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def find_tool(name: str) -> str | None:
    """Where the system tool ``name`` is (also looked for in the sbin folders)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH)


def loop_volumes_possible() -> bool:
    """True when this process can make loop-mounted volumes that the Docker engine sees:
    root, on the Docker host itself, with the file system tools installed."""
    docker_host = os.environ.get("DOCKER_HOST", "").strip()
    local = not docker_host or docker_host.startswith("unix://")
    return local and os.geteuid() == 0 and all(find_tool(t) for t in LOOP_TOOLS)


def firewall_possible() -> bool:
    """True when this process can keep the instances' iptables rules: root, on the Docker
    host itself, with iptables installed."""
    docker_host = os.environ.get("DOCKER_HOST", "").strip()
    local = not docker_host or docker_host.startswith("unix://")
    return local and os.geteuid() == 0 and find_tool("iptables") is not None


def _firewall() -> bool:
    raw = os.environ.get("CELLAR_FIREWALL", "").strip().lower() or "auto"
    if raw not in ("auto", "off"):
        raise ValueError(f"CELLAR_FIREWALL must be auto or off, got {raw!r}")
    return raw == "auto" and firewall_possible()


def _volume_backend() -> str:
    raw = os.environ.get("CELLAR_VOLUME_BACKEND", "").strip().lower()
    if not raw:
        return "loop" if loop_volumes_possible() else "docker"
    if raw not in VOLUME_BACKENDS:
        raise ValueError(f"CELLAR_VOLUME_BACKEND must be one of {', '.join(VOLUME_BACKENDS)}")
    return raw


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _on_off(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ValueError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def parse_backup_url(url: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` for ``s3://bucket[/prefix]``, None for "" (local storage)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(
            f"CELLAR_BACKUP_URL must be empty (local storage) or s3://bucket[/prefix], got {url!r}"
        )
    if not BUCKET.fullmatch(parts.netloc):
        raise ValueError(
            f"CELLAR_BACKUP_URL {url!r} names no valid bucket: use s3://bucket[/prefix] with a "
            "bucket of 3 to 63 lower-case letters, digits, dots and hyphens"
        )
    prefix = parts.path.strip("/")
    if parts.query or parts.fragment or (prefix and not PREFIX.fullmatch(prefix)):
        raise ValueError(
            f"CELLAR_BACKUP_URL {url!r} has a bad prefix: use letters, digits, '.', '_', '-' "
            "and single slashes, with no query"
        )
    if ".." in prefix.split("/"):
        raise ValueError(f"CELLAR_BACKUP_URL {url!r} may not contain '..'")
    return parts.netloc, prefix


def _endpoint_url() -> str:
    raw = os.environ.get("CELLAR_S3_ENDPOINT_URL", "").strip()
    if raw and not (urlsplit(raw).scheme in ("http", "https") and urlsplit(raw).netloc):
        raise ValueError(f"CELLAR_S3_ENDPOINT_URL must be an http(s):// URL, got {raw!r}")
    return raw


def _auth_url() -> str:
    raw = os.environ.get("CELLAR_AUTH_URL", "").strip().rstrip("/")
    if raw and not (urlsplit(raw).scheme in ("http", "https") and urlsplit(raw).netloc):
        raise ValueError(f"CELLAR_AUTH_URL must be a Keystone's http(s):// URL, got {raw!r}")
    return raw


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
    volume_backend: str = "docker"  # "loop": sizes enforced; "docker": plain Docker volumes
    backup_dir: Path | None = None  # where backups are stored (default: CELLAR_HOME/backups)
    backup_deadline: float = 3600.0  # seconds a backup or a restore may stream
    backup_url: str = ""  # "": files under backups_dir; "s3://bucket/prefix": an S3 bucket
    backup_encryption: bool = True  # new backups are encrypted at rest (off: to compare)
    s3_endpoint_url: str = ""  # an S3-compatible service; "" is AWS itself
    s3_region: str = "us-east-1"
    failover_grace: float = 2.0  # seconds a primary must stay unreachable before failover
    worker_stale: float = 5.0  # seconds of heartbeat silence after which a worker is dead
    token_ttl: float = 3600.0  # seconds a token of Cellar's own identity API lasts
    auth_url: str = ""  # a Keystone to validate tokens with; "": Cellar's own identity API
    auth_username: str = ""  # Cellar's service user at that Keystone
    auth_password: str = dataclasses.field(default="", repr=False)
    auth_project: str = "service"
    auth_cache: float = 5.0  # seconds a token that Keystone validated is taken as valid
    admin_project: str = "admin"  # an admin role on this project is an admin of Cellar
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted besides Cellar's own names
    quota_instances: int = 10
    quota_volumes: int = 40  # GB
    quota_backups: int = 50
    quota_ram: int = 20480  # MB
    tls_cert: Path | None = None  # the API's certificate (PEM), with tls_key
    tls_key: Path | None = None
    tls_auto: bool = False  # the API's certificate is issued by Cellar's CA
    public_host: str = "0.0.0.0"  # noqa: S104 - where public instances publish their port
    firewall: bool = False  # keep the instances' access rules in iptables (CELLAR_FIREWALL)
    metrics_token: str = dataclasses.field(default="", repr=False)  # "": CELLAR_HOME's file

    @property
    def api_tls(self) -> bool:
        """Whether the API serves HTTPS."""
        return self.tls_auto or self.tls_cert is not None

    @property
    def api_scheme(self) -> str:
        return "https" if self.api_tls else "http"

    @property
    def api_tls_files(self) -> tuple[Path, Path] | None:
        """The certificate and key the API serves with, if it serves HTTPS."""
        if self.tls_cert is not None and self.tls_key is not None:
            return self.tls_cert, self.tls_key
        if self.tls_auto:
            return self.home / "tls" / "api.crt", self.home / "tls" / "api.key"
        return None

    @property
    def own_identity(self) -> bool:
        """Whether Cellar serves its own identity API (no external Keystone is set)."""
        return not self.auth_url

    @property
    def identity_url(self) -> str:
        """The identity API's URL as clients should use it (the OS_AUTH_URL)."""
        if self.auth_url:
            return self.auth_url
        return f"{self.api_scheme}://{self.advertise_host}:{self.api_port}/identity/v3"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith(("filesystem://", "cellarfs://"))

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def backups_dir(self) -> Path:
        """The local backup storage: one file per backup, by project."""
        return self.backup_dir or self.home / "backups"

    @property
    def backup_s3(self) -> tuple[str, str] | None:
        """``(bucket, prefix)`` when backups go to S3, None when they stay local."""
        return parse_backup_url(self.backup_url)

    @property
    def volumes_dir(self) -> Path:
        """Where the loop backend keeps each instance's image file and its mount point."""
        return self.home / "volumes"


def load() -> Settings:
    """Read the settings from the environment (call again after changing it)."""
    home = Path(_env("CELLAR_HOME", str(Path.home() / ".cellar"))).expanduser()
    publish_host = _env("CELLAR_PUBLISH_HOST", "127.0.0.1")
    backup_url = _env("CELLAR_BACKUP_URL", "")
    parse_backup_url(backup_url)  # a bad URL stops the process here, not at the first backup
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
        volume_backend=_volume_backend(),
        backup_dir=Path(_env("CELLAR_BACKUP_DIR", str(home / "backups"))).expanduser(),
        backup_deadline=_float("CELLAR_BACKUP_DEADLINE", 3600.0),
        backup_encryption=_on_off("CELLAR_BACKUP_ENCRYPTION", True),
        failover_grace=_float("CELLAR_FAILOVER_GRACE", 2.0),
        worker_stale=_float("CELLAR_WORKER_STALE", 5.0),
        token_ttl=_float("CELLAR_TOKEN_TTL", 3600.0),
        auth_url=_auth_url(),
        auth_username=_env("CELLAR_AUTH_USERNAME", ""),
        auth_password=_env("CELLAR_AUTH_PASSWORD", ""),
        auth_project=_env("CELLAR_AUTH_PROJECT", "service"),
        auth_cache=_float("CELLAR_AUTH_CACHE", 5.0),
        admin_project=_env("CELLAR_ADMIN_PROJECT", "admin"),
        allowed_hosts=tuple(
            h.strip().lower() for h in _env("CELLAR_ALLOWED_HOSTS", "").split(",") if h.strip()
        ),
        quota_instances=int(_float("CELLAR_QUOTA_INSTANCES", 10)),
        quota_volumes=int(_float("CELLAR_QUOTA_VOLUMES", 40)),
        quota_backups=int(_float("CELLAR_QUOTA_BACKUPS", 50)),
        quota_ram=int(_float("CELLAR_QUOTA_RAM", 20480)),
        backup_url=backup_url,
        s3_endpoint_url=_endpoint_url(),
        s3_region=_env("CELLAR_S3_REGION", "us-east-1"),
        public_host=_env("CELLAR_PUBLIC_HOST", "0.0.0.0"),  # noqa: S104
        firewall=_firewall(),
        metrics_token=_env("CELLAR_METRICS_TOKEN", ""),
        **_tls(),
    )


def _tls() -> dict[str, Any]:
    mode = _env("CELLAR_TLS", "").lower()
    if mode not in ("", "auto", "off"):
        raise ValueError(f"CELLAR_TLS must be auto or off, got {mode!r}")
    cert, key = _env("CELLAR_TLS_CERT", ""), _env("CELLAR_TLS_KEY", "")
    if bool(cert) != bool(key):
        raise ValueError("CELLAR_TLS_CERT and CELLAR_TLS_KEY are set together or not at all")
    if mode == "off":
        return {}
    if cert:
        return {"tls_cert": Path(cert).expanduser(), "tls_key": Path(key).expanduser()}
    return {"tls_auto": mode == "auto"}
