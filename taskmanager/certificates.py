"""Renews the agents' certificates before they expire (a beat job).

An agent reads a renewed certificate at its next connection, so neither it nor its
engine restarts. A folder left by an instance that is gone is removed once it is ten
minutes old.
"""

from __future__ import annotations

import logging
import shutil
import time

from sqlalchemy import select

from cellar import pki
from cellar.models import Instance
from taskmanager.context import Services

logger = logging.getLogger(__name__)

LEFT_FOR = 600.0  # seconds a folder of no live instance stays before it is removed


def renew(services: Services) -> int:
    """Renew each live instance's agent certificate that is due; how many were."""
    home = services.settings.home
    with services.db.session() as session:
        live = set(session.scalars(select(Instance.id).where(Instance.deleted_at.is_(None))))
    authority = pki.Authority.from_home(home)
    renewed = 0
    for instance_id in sorted(live):
        folder = pki.agent_folder(home, instance_id)
        if folder.exists() and pki.ensure_agent_files(authority, folder, instance_id):
            logger.info("renewed the agent certificate of instance %s", instance_id)
            renewed += 1
    agents = pki.agent_folder(home, "x").parent
    settled = time.time() - LEFT_FOR  # a folder newer may be an instance made meanwhile
    for left in agents.iterdir() if agents.exists() else ():
        if left.name not in live and left.stat().st_mtime < settled:
            shutil.rmtree(left, ignore_errors=True)
    return renewed
