"""Keeps each instance's network access in force: where its port is published, and its
firewall rules, which follow the rows.

Use :func:`apply` after a change to one instance's access and :func:`reconcile` (a beat
job, and once when a worker starts, since a host restart empties the tables) for all of
them: it puts back what went missing and removes the rules of instances that are gone.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from cellar.access import Access
from cellar.errors import ComputeError
from cellar.models import Instance
from cellar.settings import Settings
from taskmanager.context import Services
from taskmanager.drivers.firewall import Allowed, Reconciled, chain_name

logger = logging.getLogger(__name__)

WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104  (addresses that name every address)


def publish_host(settings: Settings, access: Access) -> str:
    """The host address a new container publishes its engine port on."""
    return settings.public_host if access.is_public else settings.publish_host


def address(settings: Settings, access: Access) -> str:
    """The address clients are told to connect to: a public instance's own address when
    ``CELLAR_PUBLIC_HOST`` names one, else the advertised address."""
    if access.is_public and settings.public_host not in WILDCARDS:
        return settings.public_host
    return settings.advertise_host


def allowed_of(instance_id: str, host_port: int, stored: dict[str, object] | None) -> Allowed:
    return Allowed.of(instance_id, host_port, Access.of(stored).allowed_cidrs)


def apply(services: Services, instance: Instance) -> None:
    """Put the instance's rules in place; one with no port yet gets them when its
    container is made (``DockerDriver.ensure_container``)."""
    if instance.port is None:
        return
    services.firewall.apply(allowed_of(instance.id, instance.port, instance.access))


def reconcile(services: Services) -> Reconciled:
    """The rules of every live instance with a port, and none of any other."""
    if not services.firewall.enabled:
        return Reconciled(0, 0, 0)
    with services.db.session() as session:
        rows = session.execute(
            select(Instance.id, Instance.port, Instance.access).where(
                Instance.deleted_at.is_(None), Instance.port.is_not(None)
            )
        ).all()
    wanted: list[Allowed] = []
    keep: list[str] = []
    for instance_id, port, stored in rows:
        try:
            wanted.append(allowed_of(instance_id, port, stored))
        except ComputeError as exc:  # its old rules, if any, stay: better than none
            logger.error("the access of instance %s cannot be applied: %s", instance_id, exc)
            try:
                keep.append(chain_name(instance_id))
            except ComputeError:
                pass
    outcome = services.firewall.reconcile(wanted, keep)
    log = logger.info if outcome.removed or outcome.failed else logger.debug
    log("firewall: %s", outcome.sentence)
    return outcome
