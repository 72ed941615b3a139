"""Beat's sampler of engine counters: one ``MetricSample`` per instance in service, every
``cellar.metrics.EVERY`` seconds, and the samples past ``cellar.metrics.KEEP`` removed.

An agent that does not answer within ``CALL_TIMEOUT`` gives no sample this round (the
health monitor is the one that judges it); the others are asked in parallel.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from cellar import metrics
from cellar.errors import CellarError
from cellar.models import Instance, MetricSample, utcnow
from cellar.status import IN_SERVICE
from taskmanager.context import Services

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 3.0
PARALLEL = 8


def _ask(services: Services, instance: Instance) -> dict[str, float] | None:
    try:
        return services.agent_for(instance).get_metrics(timeout=CALL_TIMEOUT)
    except (CellarError, LookupError) as exc:
        logger.info("no metrics from instance %s: %s", instance.id, exc)
        return None


def sample(services: Services) -> int:
    """Take one sample of every instance in service; returns how many were stored."""
    with services.db.session() as session:
        instances = list(
            session.scalars(
                select(Instance).where(
                    Instance.deleted_at.is_(None),
                    Instance.status.in_(IN_SERVICE),
                    Instance.agent_port.is_not(None),
                    Instance.purpose.is_(None),
                )
            )
        )
        session.expunge_all()
    if instances:
        with ThreadPoolExecutor(min(PARALLEL, len(instances))) as pool:
            found = list(pool.map(lambda instance: _ask(services, instance), instances))
    else:
        found = []
    taken = utcnow()
    stored = 0
    with services.db.session() as session:
        for instance, values in zip(instances, found, strict=True):
            if values:
                session.add(MetricSample(instance_id=instance.id, taken=taken, values=values))
                stored += 1
        removed = metrics.prune(session, taken)
        session.commit()
    if removed:
        logger.info("removed %d metric samples older than %s", removed, metrics.KEEP)
    return stored
