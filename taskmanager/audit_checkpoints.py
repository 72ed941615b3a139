"""Beat's signed checkpoints of the audit chain (``cellar.audit``)."""

from __future__ import annotations

import logging

from cellar import audit
from taskmanager.context import Services

logger = logging.getLogger(__name__)


def sign(services: Services) -> int | None:
    """Sign where the audit chain ends now; the place signed, or None if nothing new."""
    signer = audit.load_signer(services.settings.home)
    with services.db.session() as session:
        made = audit.checkpoint(session, signer)
    if made is None:
        return None
    logger.debug("audit chain signed up to row %d", made.seq)
    return made.seq
