"""The certificates of each instance's agent and engine, renewed before they expire.

:func:`ensure` gives an instance's TLS folder (mounted read-only in its container) the
agent's certificate, the engine's server certificate for every name a client may use to
reach it, and its TLS policy. :func:`renew` (a beat job) does it again for every live
instance: an agent reads a renewed certificate at its next connection, and an engine
reloads its own within seconds (see ``guestagent.engines.tls_files``), so neither
restarts. A folder left by an instance that is gone is removed once it is ten minutes old.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path

from sqlalchemy import select

from cellar import pki
from cellar.models import Instance
from cellar.settings import Settings
from taskmanager.context import Services
from taskmanager.drivers.docker import container_name

logger = logging.getLogger(__name__)

LEFT_FOR = 600.0  # seconds a folder of no live instance stays before it is removed
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104  (addresses that name no host)


def engine_names(settings: Settings, instance_id: str) -> list[str]:
    """The names and addresses a client may reach an instance's engine by: its
    container's name (other members of its replica set), the host's published and
    advertised addresses, and this host's own names."""
    names = [container_name(instance_id), settings.advertise_host, settings.publish_host]
    names += [getattr(settings, "public_host", ""), socket.gethostname(), socket.getfqdn()]
    names += ["localhost", "127.0.0.1", "::1"]
    return list(dict.fromkeys(n for n in names if n not in WILDCARDS))


def ensure(
    authority: pki.Authority, settings: Settings, instance_id: str, required: bool
) -> tuple[Path, bool]:
    """The instance's TLS folder with current certificates and policy; whether anything
    in it changed."""
    folder = pki.agent_folder(settings.home, instance_id)
    changed = pki.ensure_agent_files(authority, folder, instance_id)
    names = engine_names(settings, instance_id)
    return folder, pki.ensure_engine_files(authority, folder, names, required) or changed


def renew(services: Services) -> int:
    """Renew each live instance's certificates that are due; for how many it did."""
    settings = services.settings
    home = settings.home
    with services.db.session() as session:
        rows = session.execute(
            select(Instance.id, Instance.tls_required).where(Instance.deleted_at.is_(None))
        ).all()
    live = {row.id: bool(row.tls_required) for row in rows}
    authority = pki.Authority.from_home(home)
    renewed = 0
    for instance_id, required in sorted(live.items()):
        if not pki.agent_folder(home, instance_id).exists():
            continue  # not provisioned yet: its provision makes the folder
        if ensure(authority, settings, instance_id, required)[1]:
            logger.info("renewed the certificates of instance %s", instance_id)
            renewed += 1
    agents = pki.agent_folder(home, "x").parent
    settled = time.time() - LEFT_FOR  # a folder newer may be an instance made meanwhile
    for left in agents.iterdir() if agents.exists() else ():
        if left.name not in live and left.stat().st_mtime < settled:
            shutil.rmtree(left, ignore_errors=True)
    return renewed
