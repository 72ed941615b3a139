"""Run by beat: each replica set's primary watched for automatic failover, and each
member's replication state (role, lag) recorded for the instance views.

A primary is declared dead only when its agent and its engine port both fail for
``CELLAR_FAILOVER_GRACE`` seconds, no replica still has a live link to it and at least
one replica answers (when none does, there is nothing to promote). Then a
``failover`` task starts on it (at most one: the instance's status moves from ACTIVE to
EJECT in one conditional update), which fences it and promotes the best replica.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cellar import audit
from cellar.errors import CellarError
from cellar.models import AuditEvent, Instance, ReplicaSet, Task, utcnow
from cellar.status import IN_SERVICE, InstanceStatus, TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager import replica_sets
from taskmanager.context import Services

logger = logging.getLogger(__name__)

WATCHED = IN_SERVICE
PROBE_TIMEOUT = 0.5
ASK_TIMEOUT = 1.0
CHANGING = (
    WorkflowName.SWITCHOVER,
    WorkflowName.FAILOVER,
    WorkflowName.DETACH,
    WorkflowName.DELETE,
)


def engine_answers(instance: Instance) -> bool:
    """True when something accepts a TCP connection on the engine's published port."""
    if not instance.port:
        return False
    try:
        with socket.create_connection(("127.0.0.1", instance.port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def primary_alive(services: Services, instance: Instance) -> bool:
    try:
        if services.agent_for(instance).is_serving(timeout=PROBE_TIMEOUT):
            return True
    except LookupError:
        pass
    return engine_answers(instance)


def replicas_view(services: Services, session: Session, replica_set: ReplicaSet) -> tuple[int, int]:
    """How many replicas answer, and how many of those still have a live link to the
    primary."""
    answering = seeing = 0
    for member in replica_sets.replicas(session, replica_set):
        if member.status not in WATCHED:
            continue
        try:
            state = services.agent_for(member).replication(timeout=ASK_TIMEOUT)
        except (CellarError, LookupError):
            continue
        answering += 1
        seeing += state.source_connected
    return answering, seeing


def _changing(session: Session, replica_set: ReplicaSet) -> bool:
    ids = [m.id for m in replica_sets.members(session, replica_set)]
    return (
        session.scalars(
            select(Task.id).where(
                Task.instance_id.in_(ids),
                Task.state == TaskState.RUNNING.value,
                Task.workflow.in_(CHANGING),
            )
        ).first()
        is not None
    )


def watch_primaries(services: Services) -> list[str]:
    """Look at every watched primary once; returns the ids of the failover tasks started."""
    with services.db.session() as session:
        sets = session.scalars(
            select(ReplicaSet).where(
                ReplicaSet.deleted_at.is_(None), ReplicaSet.auto_failover.is_(True)
            )
        ).all()
        started = [
            task_id
            for replica_set in sets
            if (task_id := _watch(services, session, replica_set)) is not None
        ]
    for task_id in started:
        services.enqueue(task_id, 0.0, "-")
    return started


def _watch(services: Services, session: Session, replica_set: ReplicaSet) -> str | None:
    head = session.get(Instance, replica_set.primary_id)
    if head is None or head.status not in WATCHED or _changing(session, replica_set):
        return None
    if not replica_sets.replicas(session, replica_set):
        return None
    if primary_alive(services, head):
        if replica_set.down_since is not None:
            logger.info("primary %s answers again", head.id)
            replica_set.down_since = None
        return None
    now = utcnow()
    if replica_set.down_since is None:
        logger.warning("primary %s of set %s does not answer", head.id, replica_set.id)
        replica_set.down_since = now
        session.commit()
        return None
    if (now - replica_set.down_since).total_seconds() < services.settings.failover_grace:
        return None
    answering, seeing = replicas_view(services, session, replica_set)
    if seeing:
        logger.warning("primary %s does not answer here, but a replica still sees it", head.id)
        return None
    if not answering:  # the whole host may be down or restarting: nothing to promote
        logger.warning("primary %s and its replicas all fail to answer", head.id)
        return None
    return _start_failover(services, session, replica_set, head)


def _start_failover(
    services: Services, session: Session, replica_set: ReplicaSet, head: Instance
) -> str | None:
    won = session.execute(
        update(Instance)
        .where(Instance.id == head.id, Instance.status.in_(WATCHED))
        .values(status=InstanceStatus.EJECT.value)
        .execution_options(synchronize_session=False)
    )
    if getattr(won, "rowcount", 0) != 1:
        return None  # another watcher started it
    detected = replica_set.down_since or utcnow()
    params: dict[str, object] = {
        "set_id": replica_set.id,
        "kind": "automatic_failover",
        "detected_at": detected.isoformat(),
    }
    task = start_task(
        session,
        services.secrets,
        project_id=head.project_id,
        workflow=WorkflowName.FAILOVER,
        request_id="-",
        instance_id=head.id,
        params=params,
    )
    audit.append(
        session,
        AuditEvent(
            project_id=head.project_id,
            request_id="-",
            action="instance.automatic_failover",
            target_type="instance",
            target_id=head.id,
            details={**params, "task_id": task.id},
            user_name="cellar",
            outcome="started",
        ),
    )
    session.commit()
    logger.warning(
        "primary %s is down since %s: failing over (task %s)", head.id, detected, task.id
    )
    return task.id


def record_replication(services: Services) -> int:
    """Ask every member of every set for its replication state; store it for the views."""
    with services.db.session() as session:
        members = session.scalars(
            select(Instance).where(
                Instance.deleted_at.is_(None),
                Instance.replica_set_id.is_not(None),
                Instance.status.in_(WATCHED),
                Instance.agent_port.is_not(None),
            )
        ).all()
    if not members:
        return 0

    def ask(member: Instance) -> dict[str, object] | None:
        try:
            state = services.agent_for(member).replication(timeout=ASK_TIMEOUT * 2)
        except (CellarError, LookupError):
            return None
        return {
            "role": state.role,
            "position": state.position,
            "position_value": state.position_value,
            "source_connected": state.source_connected,
            "lag_seconds": state.lag_seconds if state.lag_seconds >= 0 else None,
            "lag_bytes": state.lag_bytes if state.lag_bytes >= 0 else None,
            "replicas_connected": state.replicas_connected,
            "checked_at": utcnow().replace(microsecond=0).isoformat(),
        }

    with ThreadPoolExecutor(max_workers=min(8, len(members))) as pool:
        states = list(pool.map(ask, members))
    _offsets_behind(members, states)
    recorded = 0
    with services.db.session() as session:
        for member, state in zip(members, states, strict=True):
            if state is None:
                continue
            session.execute(
                update(Instance)
                .where(Instance.id == member.id)
                .values(replication=state, updated=Instance.updated)
                .execution_options(synchronize_session=False)
            )
            recorded += 1
    return recorded


def _offsets_behind(members: Sequence[Instance], states: list[dict[str, object] | None]) -> None:
    """Where a replica cannot tell its byte lag (Redis), take it from its primary's offset."""
    heads = {
        m.replica_set_id: state
        for m, state in zip(members, states, strict=True)
        if state is not None and state["role"] == "primary"
    }
    for member, state in zip(members, states, strict=True):
        head = heads.get(member.replica_set_id)
        if state is None or head is None or state["role"] != "replica":
            continue
        if state["lag_bytes"] is None and member.replica_of_id is not None:
            ahead = _number(head.get("position_value")) - _number(state.get("position_value"))
            state["lag_bytes"] = max(ahead, 0)


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0
