"""How instances and tasks look on the wire.

A page of instances is shown with a few queries in all, not a few for each instance:
:class:`api.related.Related` loads what their views read besides their own rows
(configuration names, replica sets and their replicas, recovery windows, running tasks)
with one query of each kind. The views read plain tuples of the columns they show
(:class:`InstanceRow`, :class:`TaskRow`, :class:`SetRow`), not ORM objects.

The view of an instance is a function of those tuples alone (its :class:`Inputs`) and
of the API's URL, so the JSON of each is kept (:func:`rendered`) under all of them as
its key: a page made again from the same rows is joined from the kept pieces, and a
change to any row a view reads makes a new key, so nothing is shown stale.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from flask import request
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from api.related import Every, Related, SetRow, TaskRow, Window
from cellar import catalog
from cellar.access import Access
from cellar.models import Instance, Task
from cellar.status import InstanceStatus, TaskState

GB = 1024**3
VIEWS_KEPT = 4096  # rendered views kept, about 1.2 kB each


class InstanceRow(NamedTuple):
    """The columns of an instance that its view reads."""

    id: str
    project_id: str
    name: str
    status: str
    operating_status: str
    flavor_id: str
    datastore: str
    datastore_version: str
    volume_size: int
    volume_used_bytes: int | None
    created: dt.datetime
    updated: dt.datetime
    host: str | None
    port: int | None
    fault: str | None
    fault_at: dt.datetime | None
    configuration_id: str | None
    replica_set_id: str | None
    replication: str | None  # the last state seen, as JSON text, so that rows compare
    access: str | None  # is_public and allowed_cidrs, as JSON text
    tls_required: bool


class Inputs(NamedTuple):
    """Everything besides the API's URL that the view of one instance shows."""

    instance: InstanceRow
    configuration_name: str | None
    replica_set: SetRow | None
    replicas: tuple[str, ...]  # for a primary
    window: Window | None
    task: TaskRow | None


JSON_COLUMNS = ("replication", "access")
INSTANCE_COLUMNS = tuple(
    cast(getattr(Instance, name), Text).label(name)
    if name in JSON_COLUMNS
    else getattr(Instance, name)
    for name in InstanceRow._fields
)


def row_of(instance: Instance) -> InstanceRow:
    values = {name: getattr(instance, name) for name in InstanceRow._fields}
    for name in JSON_COLUMNS:
        if values[name] is not None:
            values[name] = json.dumps(values[name])
    return InstanceRow(**values)


def timestamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def links(path: str) -> list[dict[str, str]]:
    return _links(request.host_url.rstrip("/") + path)


def _links(href: str) -> list[dict[str, str]]:
    return [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]


def task_view(task: Task | TaskRow) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": task.id,
        "workflow": task.workflow,
        "state": task.state,
        "step": task.step,
        "created": timestamp(task.created),
        "updated": timestamp(task.updated),
        "request_id": task.request_id,
    }
    if task.step_count:
        view["step_number"] = task.step_number
        view["steps"] = task.step_count
        view["description"] = task.description
    elif task.state == TaskState.RUNNING.value:
        view["description"] = "waiting for a worker to begin it"
    if task.error:
        view["error"] = task.error
    if task.duration is not None:
        view["duration"] = round(task.duration, 3)
    return view


def running_task(session: Session, instance_id: str) -> Task | None:
    return session.scalars(
        select(Task)
        .where(Task.instance_id == instance_id, Task.state == TaskState.RUNNING.value)
        .order_by(Task.created.desc())
    ).first()


def volume_view(instance: Instance | InstanceRow) -> dict[str, Any]:
    """Trove's volume: its size, and the GB in use once the agent has reported it."""
    view: dict[str, Any] = {"size": instance.volume_size}
    if instance.volume_used_bytes is not None:
        view["used"] = round(instance.volume_used_bytes / GB, 2)
    return view


def _has_archive(instance: InstanceRow) -> bool:
    return _archives(instance.datastore, instance.datastore_version)


@functools.cache  # the catalog is fixed; looking a version up makes its uuid5 id each time
def _archives(datastore: str, version_name: str) -> bool:
    version = catalog.DATASTORES[datastore].version(version_name)
    return version is not None and bool(version.archive_format)


def replication_view(inputs: Inputs, root: str) -> dict[str, Any]:
    """Trove's ``replica_of`` and ``replicas``, and Cellar's ``replication`` and ``endpoints``."""
    instance, replica_set = inputs.instance, inputs.replica_set
    if replica_set is None:
        return {}
    path = f"{root}/v1.0/{instance.project_id}/instances/"
    result: dict[str, Any] = {}
    is_primary = replica_set.primary_id == instance.id
    state = json.loads(instance.replication or "null") or {}
    result["replication"] = {
        "role": "primary" if is_primary else "replica",
        "mode": replica_set.mode,
        "auto_failover": replica_set.auto_failover,
        **{k: state[k] for k in ("lag_seconds", "lag_bytes", "source_connected", "position",
                                 "replicas_connected", "checked_at") if k in state},
    }  # fmt: skip
    if is_primary and inputs.replicas:  # gone with the last replica, as in Trove
        result["replicas"] = [{"id": r, "links": _links(path + r)} for r in inputs.replicas]
    elif not is_primary:  # a primary left alone is nobody's replica
        result["replica_of"] = {
            "id": replica_set.primary_id,
            "links": _links(path + replica_set.primary_id),
        }
    if replica_set.rw_port:
        host = instance.host
        result["endpoints"] = {
            "rw": {"host": host, "port": replica_set.rw_port},
            "ro": {"host": host, "port": replica_set.ro_port},
        }
    return result


def inputs_of(
    session: Session, rows: Sequence[InstanceRow], every: Every | None = None
) -> list[Inputs]:
    """The inputs of the views of ``rows``, with a few queries in all; ``every``: the
    conditions that ``rows`` are all the instances of, if they are."""
    archived = {row.id for row in rows if _has_archive(row)}
    related = Related.load(session, rows, archived, every)
    found = []
    for row in rows:
        replica_set = related.sets.get(row.replica_set_id or "")
        replicas: tuple[str, ...] = ()
        if replica_set is not None and replica_set.primary_id == row.id:
            replicas = related.replicas.get(replica_set.id, ())
        found.append(
            Inputs(
                instance=row,
                configuration_name=related.configuration_names.get(row.configuration_id or ""),
                replica_set=replica_set,
                replicas=replicas,
                window=related.windows.get(row.id),
                task=related.tasks.get(row.id),
            )
        )
    return found


def instance_views(session: Session, instances: Sequence[Instance]) -> list[dict[str, Any]]:
    """The views of ``instances``, in their order, with a few queries in all, each with the
    ``connection`` that lists leave out."""
    root = request.host_url.rstrip("/")
    found = [view(i, root) for i in inputs_of(session, [row_of(i) for i in instances])]
    for shown, instance in zip(found, instances, strict=True):
        active = instance.status == InstanceStatus.ACTIVE.value and instance.port
        shown["connection"] = {"host": instance.host, "port": instance.port} if active else None
    return found


def instance_view(session: Session, instance: Instance) -> dict[str, Any]:
    return instance_views(session, [instance])[0]


@functools.lru_cache(maxsize=VIEWS_KEPT)
def rendered(inputs: Inputs, root: str) -> bytes:
    """The view of one instance as JSON, kept under its inputs."""
    return orjson.dumps(view(inputs, root))


def tls_view(instance: InstanceRow | Instance) -> dict[str, bool]:
    """How the instance's engine port speaks TLS (always offered; Redis has no plaintext
    port at all)."""
    required = bool(instance.tls_required)
    return {"required": required, "plaintext_refused": required or instance.datastore == "redis"}


def view(inputs: Inputs, root: str) -> dict[str, Any]:
    """The view of one instance; ``root`` is the API's URL, as ``links`` makes them."""
    instance = inputs.instance
    project = f"{root}/v1.0/{instance.project_id}"
    access = Access.of(json.loads(instance.access) if instance.access else None)
    result: dict[str, Any] = {
        "id": instance.id,
        "name": instance.name,
        "status": instance.status,
        "operating_status": instance.operating_status,
        "flavor": {
            "id": instance.flavor_id,
            "links": _links(f"{project}/flavors/{instance.flavor_id}"),
        },
        "datastore": {
            "type": instance.datastore,
            "version": instance.datastore_version,
            "version_number": instance.datastore_version,
        },
        "volume": volume_view(instance),
        "created": timestamp(instance.created),
        "updated": timestamp(instance.updated),
        "links": _links(f"{project}/instances/{instance.id}"),
        "access": access.stored(),
        "tls": tls_view(instance),
    }
    if instance.status == InstanceStatus.ACTIVE.value and instance.port:
        # no "connection" here: openstacksdk's lists take each key as an argument, and
        # that one is already its own; "hostname" and "port" say the same
        result["hostname"], result["port"] = instance.host, instance.port
        result["ip"] = [instance.host]
        kind = "public" if access.is_public else "private"
        result["addresses"] = [{"address": instance.host, "type": kind}]
    if instance.fault:
        result["fault"] = {
            "message": instance.fault,
            "created": timestamp(instance.fault_at),
            "details": instance.fault,
        }
    if instance.configuration_id:
        result["configuration"] = {
            "id": instance.configuration_id,
            "name": inputs.configuration_name,
            "links": _links(f"{project}/configurations/{instance.configuration_id}"),
        }
    result.update(replication_view(inputs, root))
    if inputs.window is not None:
        result["recovery_window"] = {
            "earliest": f"{timestamp(inputs.window.earliest)}Z",
            "latest": f"{timestamp(inputs.window.latest)}Z",
        }
    if inputs.task is not None:
        result["task"] = task_view(inputs.task)
    return result
