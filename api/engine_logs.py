"""/instances/{id}/log: the engine's logs, listed and tailed live by the guest agent, and
published to backup storage with Trove's ``log`` actions.

``POST .../log`` with ``{"name": <log>}`` shows one log; adding ``"publish": 1`` stores
what the log gained since the last publish in backup storage, ``"discard": 1`` removes
what was published (both run as a short task the request waits for). Cellar's logs are the
engine's own (Trove's type SYS): always on, so ``enable`` and ``disable`` are refused.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from api import audit, body, task_wait
from api.databases import live
from api.instance_checks import busy_check, load_instance
from api.schemas import parse
from api.schemas.engine_logs import LogAction
from api.state import services
from cellar.errors import InvalidInput, NotFound
from cellar.models import Instance, LogPublication
from cellar.status import TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("logs", __name__)

BASE = "/v1.0/<project_id>/instances/<instance_id>/log"
MAX_LINES = 5000
ACTIONS = ("enable", "disable", "publish", "discard")


def log_view(instance: Instance, name: str, size: int, row: LogPublication | None) -> dict:
    published = row.published if row is not None else 0
    rotated = size < published
    pending = size if rotated else size - published
    if published == 0:
        status = "Ready" if size else "Ready-empty"
    else:
        status = "Rotated" if rotated else ("Partial" if pending else "Published")
    prefix = f"{instance.project_id}/{instance.id}-logs/{name}/"
    return {
        "name": name,
        "type": "SYS",
        "status": status,
        "size": size,
        "published": published,
        "pending": pending,
        "container": row.location if row is not None else None,
        "prefix": prefix if row is not None else None,
        "metafile": f"{prefix}metafile" if row is not None else None,
    }


def _views(instance: Instance, only: str | None = None) -> list[dict[str, Any]]:
    found = live(instance, lambda agent: agent.list_logs())
    with services().db.session() as session:
        rows = {
            row.name: row
            for row in session.scalars(
                select(LogPublication).where(LogPublication.instance_id == instance.id)
            )
        }
        session.expunge_all()
    names = [log["name"] for log in found]
    if only is not None and only not in names:
        raise NotFound(f"instance {instance.id} has no log {only!r}; logs: {', '.join(names)}")
    return [
        log_view(instance, log["name"], log["size"], rows.get(log["name"]))
        for log in found
        if only is None or log["name"] == only
    ]


@blueprint.get(BASE)
def list_logs(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    return jsonify({"logs": _views(instance)})


def _action_of(data: dict[str, Any]) -> tuple[str, set[str]]:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("the body needs 'name': the log to act on (GET .../log lists them)")
    unknown = sorted(set(data) - {"name", *ACTIONS})
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}; a log action takes 'name' and any of "
            f"{', '.join(ACTIONS)}"
        )
    chosen = set()
    for action in ACTIONS:
        value = data.get(action)
        if value in (None, 0, False):
            continue
        if value not in (1, True):
            raise InvalidInput(f"'{action}' must be 1 (or true) to ask for it, not {value!r}")
        chosen.add(action)
    if {"enable", "disable"} <= chosen:
        raise InvalidInput(f"log {name!r} cannot be enabled and disabled at once")
    return name, chosen


@blueprint.post(BASE)
def log_action(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    name, chosen = _action_of(parse(LogAction))
    _views(instance, only=name)  # the log exists, and the agent answers
    if chosen & {"enable", "disable"}:
        raise InvalidInput(
            f"log {name!r} is a system log (type SYS), kept by the engine at all times: "
            "it cannot be enabled or disabled; it can be shown, published and discarded"
        )
    for action, workflow in (
        ("discard", WorkflowName.DISCARD_LOG),
        ("publish", WorkflowName.PUBLISH_LOG),
    ):
        if action in chosen:
            task_id = _start(project_id, instance_id, workflow, name, action)
            finished = task_wait.wait(task_id)
            if finished is None:
                return jsonify(
                    {"log": _views(instance, only=name)[0], "task": task_wait.running(task_id)}
                ), 202
            if finished.state != TaskState.COMPLETED.value:
                raise task_wait.failure(finished, f"{action}ing log {name!r}")
    return jsonify({"log": _views(instance, only=name)[0]})


def _start(
    project_id: str, instance_id: str, workflow: WorkflowName, name: str, action: str
) -> str:
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        busy_check(session, instance)
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=workflow,
            request_id=g.request_id, instance_id=instance.id, params={"name": name},
        )  # fmt: skip
        audit.record(
            session, project_id, f"instance.log_{action}", "instance", instance.id,
            {"task_id": task.id, "log": name},
        )  # fmt: skip
        task_id = task.id
    svc.enqueue(task_id, 0.0, g.request_id)
    return task_id


@blueprint.get(f"{BASE}/<name>")
def tail_log(project_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    lines = body.integer(request.args.get("lines", 100), "lines", 1, MAX_LINES)
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    known = [log["name"] for log in live(instance, lambda agent: agent.list_logs())]
    if name not in known:
        raise NotFound(f"instance {instance_id} has no log {name!r}; logs: {', '.join(known)}")
    found = live(instance, lambda agent: agent.tail_log(name, lines))
    return jsonify({"log": {"name": name, "lines": found}})
