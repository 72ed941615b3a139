"""How instances and tasks look on the wire."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import replicas
from cellar.models import Configuration, Instance, Task
from cellar.recovery import recovery_window
from cellar.status import InstanceStatus, TaskState

GB = 1024**3


def timestamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(microsecond=0).isoformat()


def links(path: str) -> list[dict[str, str]]:
    href = request.host_url.rstrip("/") + path
    return [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]


def task_view(task: Task) -> dict[str, Any]:
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


def volume_view(instance: Instance) -> dict[str, Any]:
    """Trove's volume: its size, and the GB in use once the agent has reported it."""
    view: dict[str, Any] = {"size": instance.volume_size}
    if instance.volume_used_bytes is not None:
        view["used"] = round(instance.volume_used_bytes / GB, 2)
    return view


def instance_view(session: Session, instance: Instance) -> dict[str, Any]:
    path = f"/v1.0/{instance.project_id}/instances/{instance.id}"
    view: dict[str, Any] = {
        "id": instance.id,
        "name": instance.name,
        "status": instance.status,
        "operating_status": instance.operating_status,
        "flavor": {
            "id": instance.flavor_id,
            "links": links(f"/v1.0/{instance.project_id}/flavors/{instance.flavor_id}"),
        },
        "datastore": {"type": instance.datastore, "version": instance.datastore_version},
        "volume": volume_view(instance),
        "created": timestamp(instance.created),
        "updated": timestamp(instance.updated),
        "links": links(path),
        "connection": None,
    }
    if instance.status == InstanceStatus.ACTIVE.value and instance.port:
        view["connection"] = {"host": instance.host, "port": instance.port}
        view["ip"] = [instance.host]
    if instance.fault:
        view["fault"] = {
            "message": instance.fault,
            "created": timestamp(instance.fault_at),
            "details": instance.fault,
        }
    if instance.configuration_id:
        config = session.get(Configuration, instance.configuration_id)
        view["configuration"] = {
            "id": instance.configuration_id,
            "name": config.name if config else None,
            "links": links(
                f"/v1.0/{instance.project_id}/configurations/{instance.configuration_id}"
            ),
        }
    view.update(replicas.view(session, instance, links))
    window = recovery_window(session, instance)
    if window is not None:
        view["recovery_window"] = {k: f"{timestamp(v)}Z" for k, v in window.items()}
    task = running_task(session, instance.id)
    if task is not None:
        view["task"] = task_view(task)
    return view
