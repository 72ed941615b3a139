"""What every replication workflow needs to know about a replica set.

A set is one primary and its replicas, all on the project's network. Replicas log in to
the primary as ``REPLICATION_USER`` with the set's own password (kept sealed in its row)
and are known there by ``replica_name`` (a PostgreSQL slot, a client name).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from cellar import catalog
from cellar.models import Instance, ReplicaSet
from cellar.replica_sets import load_set, members, primary, replicas
from cellar.status import IN_SERVICE
from taskmanager.agent_client import Source
from taskmanager.context import Services
from taskmanager.drivers.docker import container_name
from taskmanager.drivers.endpoints import Backend

logger = logging.getLogger(__name__)

# the read side is shared with the API: it lives in cellar.replica_sets
__all__ = [
    "enable_on_primary",
    "load_set",
    "members",
    "primary",
    "refresh_endpoints",
    "replica_name",
    "replicas",
    "source",
]

REPLICATION_USER = "cellar_repl"
CALL_TIMEOUT = 30.0
# Replicas that serve reads: those the control plane is not building or changing.
SERVING = IN_SERVICE


def replica_name(instance_id: str) -> str:
    """The replica's name at its primary: letters, digits and ``_`` only (a PG slot)."""
    return "cellar_" + instance_id.replace("-", "")


def engine_port(instance: Instance) -> int:
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None:
        raise LookupError(f"datastore version {instance.datastore_version} is not offered")
    return version.port


def source(services: Services, replica_set: ReplicaSet, of: Instance, name: str) -> Source:
    """Where the replica called ``name`` finds the primary ``of`` and how it logs in."""
    return Source(
        host=container_name(of.id),
        port=engine_port(of),
        user=REPLICATION_USER,
        password=services.secrets.open(replica_set.secret)["password"],
        name=name,
    )


def enable_on_primary(
    services: Services, session: Session, replica_set: ReplicaSet, synchronous: bool | None = None
) -> None:
    """Let every replica of the set (built or being built) in at the primary.

    ``synchronous`` None means the set's mode, but only once a replica serves: a
    synchronous primary with no replica streaming would hold every commit.
    """
    head = primary(session, replica_set)
    others = replicas(session, replica_set)
    if synchronous is None:
        synchronous = replica_set.mode == "sync" and any(r.status in SERVING for r in others)
    services.agent_for(head).enable_replication(
        REPLICATION_USER,
        services.secrets.open(replica_set.secret)["password"],
        [replica_name(r.id) for r in others],
        synchronous,
        CALL_TIMEOUT,
    )


def refresh_endpoints(services: Services, session: Session, replica_set: ReplicaSet) -> None:
    """Point the set's rw endpoint at its primary and its ro endpoint at serving replicas."""
    head = primary(session, replica_set)
    port = engine_port(head)
    ro = [
        Backend(name=r.id, host=container_name(r.id), port=port)
        for r in replicas(session, replica_set)
        if r.status in SERVING
    ]
    rw = Backend(name=head.id, host=container_name(head.id), port=port)
    rw_port, ro_port = services.endpoints.ensure(
        replica_set.id,
        replica_set.project_id,
        rw,
        ro,
        services.settings.publish_host,
        replica_set.rw_port or 0,
        replica_set.ro_port or 0,
    )
    replica_set.rw_port, replica_set.ro_port = rw_port, ro_port
