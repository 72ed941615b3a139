"""Replication through Trove's instance API: ``replica_of`` at create, the promote and
eject actions, ``replica_of: null`` to detach, and Cellar's ``replication`` settings."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import body
from cellar import catalog, replica_sets
from cellar.errors import Busy, Conflict, InvalidInput, NotFound
from cellar.models import Instance, ReplicaSet, Task
from cellar.secrets import SecretBox
from cellar.status import IN_SERVICE, OperatingStatus, TaskState

MODES = ("async", "sync")
READY = IN_SERVICE
NOT_WITH_REPLICA_OF = ("restorePoint", "databases", "users")


@dataclasses.dataclass(frozen=True)
class ReplicaPlan:
    """What a create with ``replica_of`` asks for, checked."""

    source: Instance
    count: int
    mode: str | None
    auto_failover: bool | None


def settings(value: object, datastore: str) -> tuple[str | None, bool | None]:
    """Cellar's ``replication`` object: ``mode`` (async, sync) and ``auto_failover``."""
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"mode", "auto_failover"}:
        raise InvalidInput(
            'replication takes {"mode": "async" or "sync", "auto_failover": true or false}'
        )
    mode = value.get("mode")
    if mode is not None and mode not in MODES:
        raise InvalidInput(f"replication.mode must be one of {', '.join(MODES)}, not {mode!r}")
    version = catalog.find_datastore(datastore)
    if mode == "sync" and not (version and version.default_version.has_sync_replication):
        raise InvalidInput(f"synchronous replication is not offered for {datastore}")
    auto = value.get("auto_failover")
    if auto is not None and not isinstance(auto, bool):
        raise InvalidInput("replication.auto_failover must be true or false")
    return mode, auto


def plan(session: Session, project_id: str, data: dict[str, Any]) -> ReplicaPlan | None:
    """The replicas a create asks for, or None when it asks for none."""
    source_id = data.get("replica_of")
    if source_id in (None, ""):
        if data.get("replica_count") not in (None, ""):
            raise InvalidInput("replica_count needs replica_of: the instance to replicate")
        if data.get("replication") is not None:
            raise InvalidInput("replication settings need replica_of (or go on the primary)")
        return None
    for field in NOT_WITH_REPLICA_OF:
        if data.get(field) not in (None, [], ""):
            raise InvalidInput(
                f"{field} cannot be given with replica_of: a replica copies its source"
            )
    source = session.get(Instance, str(source_id))
    if (
        source is None
        or source.project_id != project_id
        or source.deleted_at is not None
        or source.purpose is not None
    ):
        raise NotFound(f"instance {source_id} (replica_of) does not exist in project {project_id}")
    if source.replica_of_id is not None:
        raise InvalidInput(
            f"instance {source.id} is itself a replica; "
            f"replicate its primary {source.replica_of_id}"
        )
    if source.status not in READY:
        raise Busy(f"instance {source.id} is {source.status}; a replica needs it ACTIVE")
    count = body.integer(
        data.get("replica_count", 1), "replica_count", 1, replica_sets.MAX_REPLICAS
    )
    replica_set = replica_sets.load_set(session, source)
    if replica_set is not None:
        room(session, replica_set, count)
    datastore = data.get("datastore")
    if isinstance(datastore, dict) and datastore.get("type") not in (None, source.datastore):
        raise InvalidInput(f"a replica of {source.id} runs {source.datastore}, like its source")
    mode, auto = settings(data.get("replication"), source.datastore)
    return ReplicaPlan(source=source, count=count, mode=mode, auto_failover=auto)


def join(box: SecretBox, session: Session, replica_plan: ReplicaPlan) -> ReplicaSet:
    """The source's set (made now if it has none), with the asked-for settings; locked
    until the caller commits, and its room for the new replicas checked again."""
    source = replica_plan.source
    replica_set = replica_sets.set_of_primary(session, box, source)
    room(session, replica_set, replica_plan.count)
    if replica_plan.mode is not None:
        replica_set.mode = replica_plan.mode
    if replica_plan.auto_failover is not None:
        replica_set.auto_failover = replica_plan.auto_failover
    return replica_set


def room(session: Session, replica_set: ReplicaSet, count: int) -> None:
    """Refuse (409) more replicas than a set holds."""
    existing = len(replica_sets.replicas(session, replica_set))
    if existing + count > replica_sets.MAX_REPLICAS:
        raise Conflict(
            f"instance {replica_set.primary_id} has {existing} replicas; a set holds at most "
            f"{replica_sets.MAX_REPLICAS}, so {count} more do not fit"
        )


def volume_size(data: dict[str, Any], source: Instance) -> int:
    if data.get("volume") is None:
        return source.volume_size
    value = data["volume"]
    if not isinstance(value, dict) or "size" not in value:
        raise InvalidInput(
            f'volume must be {{"size": {source.volume_size}..{catalog.MAX_VOLUME_GB}}}'
        )
    return body.integer(value["size"], "volume.size", source.volume_size, catalog.MAX_VOLUME_GB)


def busy_members(session: Session, replica_set: ReplicaSet) -> None:
    """Refuse (422) a change of primary while a member is busy or not ready."""
    members = replica_sets.members(session, replica_set)
    ids = [m.id for m in members]
    task = session.scalars(
        select(Task).where(Task.instance_id.in_(ids), Task.state == TaskState.RUNNING.value)
    ).first()
    if task is not None:
        raise Busy(
            f"instance {task.instance_id} of the set is busy with task {task.id} ({task.workflow})"
        )


def check_promote(session: Session, instance: Instance) -> ReplicaSet:
    replica_set = replica_sets.load_set(session, instance)
    if replica_set is None or replica_set.primary_id == instance.id:
        raise InvalidInput(f"instance {instance.id} is not a replica; promote one of its replicas")
    if instance.status not in READY:
        raise Busy(f"instance {instance.id} is {instance.status}; promotion needs it ACTIVE")
    busy_members(session, replica_set)
    head = replica_sets.primary(session, replica_set)
    if head.status not in READY or head.operating_status != OperatingStatus.HEALTHY.value:
        raise Conflict(
            f"the primary {head.id} is {head.status}/{head.operating_status}: a switchover needs "
            "a running primary; use eject_replica_source on it to fail over"
        )
    return replica_set


def check_eject(session: Session, instance: Instance) -> ReplicaSet:
    replica_set = replica_sets.load_set(session, instance)
    if replica_set is None or replica_set.primary_id != instance.id:
        raise InvalidInput(f"instance {instance.id} is not the primary of a replica set")
    if not replica_sets.replicas(session, replica_set):
        raise InvalidInput(f"instance {instance.id} has no replica to fail over to")
    if instance.operating_status == OperatingStatus.HEALTHY.value and instance.status in READY:
        raise Conflict(
            f"the primary {instance.id} is healthy; use promote_to_replica_source on a replica "
            "for a switchover that loses nothing"
        )
    return replica_set


def check_detach(session: Session, instance: Instance) -> ReplicaSet:
    replica_set = replica_sets.load_set(session, instance)
    if replica_set is None or replica_set.primary_id == instance.id:
        raise InvalidInput(f"instance {instance.id} is not a replica; only a replica is detached")
    return replica_set


def check_delete(session: Session, instance: Instance) -> None:
    replica_set = replica_sets.load_set(session, instance)
    if replica_set is None or replica_set.primary_id != instance.id:
        return
    others = replica_sets.replicas(session, replica_set)
    if others:
        raise Conflict(
            f"instance {instance.id} is the primary of {len(others)} replicas; delete or detach "
            "them first, or promote one of them"
        )


def check_primary(session: Session, instance: Instance) -> ReplicaSet:
    replica_set = replica_sets.load_set(session, instance)
    if replica_set is None or replica_set.primary_id != instance.id:
        raise InvalidInput(
            f"instance {instance.id} is not the primary of a replica set; replication settings "
            "belong to a set's primary"
        )
    return replica_set


def refuse_on_replica(instance: Instance) -> None:
    """Users, databases and root change on a set's primary; its replicas copy them."""
    if instance.replica_of_id is not None:
        raise Conflict(
            f"instance {instance.id} is a read-only replica of {instance.replica_of_id}; "
            "change its users, databases and root on that primary"
        )
