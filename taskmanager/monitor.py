"""The health monitor, run by beat: turns agents' reports into ``operating_status``.

An instance whose agent stops answering is never left HEALTHY: after
``CELLAR_HEALTH_GRACE`` seconds without an answer it becomes SHUTDOWN (its
container is not running) or ERROR (the container runs but the agent is mute).
Each report also carries how full the data volume is, stored for the instance view.
Before asking, it mounts again any volume a host restart took away and starts the
container that Docker could not start without it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, update

from cellar import catalog
from cellar.errors import CellarError
from cellar.models import Instance, utcnow
from cellar.status import IN_SERVICE, OperatingStatus
from taskmanager.agent_client import StatusReport
from taskmanager.context import Services

logger = logging.getLogger(__name__)

WATCHED = IN_SERVICE
REPORTED = {
    "HEALTHY": OperatingStatus.HEALTHY,
    "SHUTDOWN": OperatingStatus.SHUTDOWN,
    "FAILED": OperatingStatus.ERROR,
    "NEW": OperatingStatus.BUILD,
    "BUILDING": OperatingStatus.BUILD,
}
CALL_TIMEOUT = 2.0
PARALLEL = 8


def observe(services: Services, instance: Instance) -> StatusReport | None:
    """What the instance's agent says now, or None when it does not answer."""
    try:
        return services.agent_for(instance).status_report(timeout=CALL_TIMEOUT)
    except (CellarError, LookupError) as exc:
        logger.info("no health report from instance %s: %s", instance.id, exc)
        return None


def remount_volumes(services: Services) -> int:
    """Mount the volumes that running instances lost and start their containers again.

    Run when the worker starts and before each health round; only instances that
    no workflow is changing are touched. Returns how many volumes were mounted.
    """
    with services.db.session() as session:
        ids = session.scalars(
            select(Instance.id).where(Instance.deleted_at.is_(None), Instance.status.in_(WATCHED))
        ).all()
    mounted = 0
    for instance_id in ids:
        try:
            if not services.compute.remount_volume(instance_id):
                continue
            mounted += 1
            logger.warning("the volume of instance %s was not mounted: mounted it", instance_id)
            services.compute.start_container(instance_id)
        except CellarError as exc:
            logger.warning("cannot mount the volume of %s again: %s", instance_id, exc.message)
    return mounted


def store_usage(
    services: Services, instances: Sequence[Instance], reports: Sequence[StatusReport | None]
) -> None:
    """Record each reported volume usage that changed, without touching ``updated``."""
    with services.db.session() as session:
        for instance, report in zip(instances, reports, strict=True):
            if report is None or report.volume_total_bytes <= 0:
                continue
            usage = (report.volume_used_bytes, report.volume_total_bytes)
            if usage == (instance.volume_used_bytes, instance.volume_total_bytes):
                continue
            session.execute(
                update(Instance)
                .where(Instance.id == instance.id)
                .values(
                    volume_used_bytes=usage[0],
                    volume_total_bytes=usage[1],
                    updated=Instance.updated,
                )
                .execution_options(synchronize_session=False)
            )


def follow_ports(services: Services, instance: Instance) -> bool:
    """Record the container's current host ports if a restart moved them; True if it did."""
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None:
        return False
    try:
        ports = services.compute.published_ports(instance.id, version.port, catalog.AGENT_PORT)
    except CellarError as exc:
        logger.warning("cannot inspect the container of %s: %s", instance.id, exc.message)
        return False
    if ports is None or (ports.engine, ports.agent) == (instance.port, instance.agent_port):
        return False
    logger.info("instance %s is now published on port %d", instance.id, ports.engine)
    instance.port, instance.agent_port = ports.engine, ports.agent
    return True


def silent_status(services: Services, instance: Instance) -> OperatingStatus:
    """The status of an instance whose agent has been silent past the grace period."""
    try:
        state = services.compute.container_state(instance.id)
    except CellarError as exc:
        logger.warning("cannot inspect the container of %s: %s", instance.id, exc.message)
        return OperatingStatus.ERROR
    return OperatingStatus.ERROR if state == "running" else OperatingStatus.SHUTDOWN


def check_health(services: Services) -> int:
    """Ask every running instance's agent for its health; return how many changed."""
    remount_volumes(services)
    with services.db.session() as session:
        instances = session.scalars(
            select(Instance).where(
                Instance.deleted_at.is_(None),
                Instance.status.in_(WATCHED),
                Instance.agent_port.is_not(None),
            )
        ).all()
    if not instances:
        return 0
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(instances))) as pool:
        reports = list(pool.map(lambda i: observe(services, i), instances))
    store_usage(services, instances, reports)
    grace = dt.timedelta(seconds=services.settings.health_grace)
    changed = 0
    now = utcnow()
    with services.db.session() as session:
        answered = [i.id for i, report in zip(instances, reports, strict=True) if report]
        if answered:  # a heartbeat is not a change: ``updated`` keeps its value
            session.execute(
                update(Instance)
                .where(Instance.id.in_(answered))
                .values(health_checked_at=now, updated=Instance.updated)
                .execution_options(synchronize_session=False)
            )
        for seen, report in zip(instances, reports, strict=True):
            instance = session.get(Instance, seen.id)
            if instance is None or instance.status not in WATCHED:
                continue
            if report is not None:
                new = REPORTED.get(report.state, OperatingStatus.ERROR)
            elif follow_ports(services, instance):
                continue  # asked again at the new address next round
            elif now - (instance.health_checked_at or instance.updated) > grace:
                new = silent_status(services, instance)
            else:
                continue
            if instance.operating_status != new.value:
                logger.info(
                    "instance %s is now %s (was %s)",
                    instance.id,
                    new.value,
                    instance.operating_status,
                )
                instance.operating_status = new.value
                changed += 1
    return changed
