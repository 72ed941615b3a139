"""Replica sets as the metadata records them: the reads that the API and the task
manager share, and the one way a primary's set is made."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cellar.models import Instance, ReplicaSet, new_id
from cellar.secrets import SecretBox

MAX_REPLICAS = 5


def load_set(session: Session, instance: Instance) -> ReplicaSet | None:
    if instance.replica_set_id is None:
        return None
    found = session.get(ReplicaSet, instance.replica_set_id)
    return found if found is not None and found.deleted_at is None else None


def members(session: Session, replica_set: ReplicaSet) -> list[Instance]:
    """Every live instance of the set, the primary included, oldest first."""
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.replica_set_id == replica_set.id, Instance.deleted_at.is_(None))
            .order_by(Instance.created, Instance.id)
        )
    )


def replicas(session: Session, replica_set: ReplicaSet) -> list[Instance]:
    return [m for m in members(session, replica_set) if m.id != replica_set.primary_id]


def primary(session: Session, replica_set: ReplicaSet) -> Instance:
    found = session.get(Instance, replica_set.primary_id)
    if found is None:
        raise LookupError(f"the primary {replica_set.primary_id} of set {replica_set.id} is gone")
    return found


def set_of_primary(session: Session, box: SecretBox, source: Instance) -> ReplicaSet:
    """The set ``source`` heads, made now if it has none. Its row stays locked until the
    caller's transaction ends, so requests for replicas of one primary are served one
    after the other: count the set's replicas again after this call.

    The set is claimed on the primary's own row, ``replica_set_id`` going from NULL to
    the new set's id in one conditional update: two first replicas asked for at once
    make one set, whichever commits first (a unique index on a live set's primary backs
    that up).
    """
    set_id = new_id()
    claimed: Any = session.execute(
        update(Instance)
        .where(Instance.id == source.id, Instance.replica_set_id.is_(None))
        .values(replica_set_id=set_id, updated=Instance.updated)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount == 1:
        set_committed_value(source, "replica_set_id", set_id)
        made = ReplicaSet(
            id=set_id,
            project_id=source.project_id,
            primary_id=source.id,
            datastore=source.datastore,
            secret=box.seal({"password": secrets.token_urlsafe(24)}),
        )
        session.add(made)
        session.flush()
        return made
    current = session.scalar(select(Instance.replica_set_id).where(Instance.id == source.id))
    set_committed_value(source, "replica_set_id", current)
    found = load_set(session, source)
    if found is None:
        raise LookupError(f"instance {source.id} belongs to a replica set that is gone")
    session.execute(
        update(ReplicaSet)
        .where(ReplicaSet.id == found.id)
        .values(updated=ReplicaSet.updated)
        .execution_options(synchronize_session=False)
    )
    return found
