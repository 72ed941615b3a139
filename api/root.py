"""The engine's superuser: ``POST /instances/{id}/root`` enables it, ``GET`` tells whether
it is, ``DELETE`` disables it again.

Enabling is a task like any change, but the caller needs the password at once, so the
request waits (boundedly) for the task and answers with the password only once; if the
task is still running then, the answer is 202 with the password and the task to follow.
Disabling waits the same way and answers 204, or 202 with the task.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue

from api import audit, replicas, task_wait
from api.databases import BASE, instance_version
from api.instance_checks import busy_check, load_instance
from api.schemas import parse
from api.schemas.root import EnableRoot
from api.state import services
from cellar import catalog, names
from cellar.errors import NotFound
from cellar.status import TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("root", __name__)


def _password() -> str:
    """The password the caller chose (Trove's optional ``password``), or a new random one."""
    if not request.get_data():
        return secrets.token_urlsafe(24)
    data = parse(EnableRoot)
    chosen = data.get("password")
    if isinstance(data.get("root"), dict):
        chosen = data["root"].get("password", chosen)
    return (
        secrets.token_urlsafe(24) if chosen in (None, "") else names.check_password(chosen, "root")
    )


@blueprint.post(f"{BASE}/root")
def enable_root(project_id: str, instance_id: str) -> ResponseReturnValue:
    password = _password()
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        instance_version(instance)
        replicas.refuse_on_replica(instance)
        busy_check(session, instance)
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=WorkflowName.ENABLE_ROOT,
            request_id=g.request_id, instance_id=instance.id, secret={"root": password},
        )  # fmt: skip
        audit.record(
            session, project_id, "instance.root_enable", "instance", instance.id,
            {"task_id": task.id},
        )  # fmt: skip
        task_id, datastore = task.id, instance.datastore
    svc.enqueue(task_id, 0.0, g.request_id)
    user = {"name": catalog.ROOT_USERS[datastore], "password": password}
    finished = task_wait.wait(task_id)
    if finished is None:
        return jsonify({"user": user, "task": task_wait.running(task_id)}), 202
    if finished.state != TaskState.COMPLETED.value:
        raise task_wait.failure(finished, "enabling root")
    return jsonify({"user": user})


@blueprint.delete(f"{BASE}/root")
def disable_root(project_id: str, instance_id: str) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        instance_version(instance)
        replicas.refuse_on_replica(instance)
        if instance.root_enabled_at is None:
            raise NotFound(
                f"the superuser of instance {instance_id} is not enabled; "
                f"POST /v1.0/{project_id}/instances/{instance_id}/root enables it"
            )
        busy_check(session, instance)
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=WorkflowName.DISABLE_ROOT,
            request_id=g.request_id, instance_id=instance.id,
        )  # fmt: skip
        audit.record(
            session, project_id, "instance.root_disable", "instance", instance.id,
            {"task_id": task.id},
        )  # fmt: skip
        task_id = task.id
    svc.enqueue(task_id, 0.0, g.request_id)
    finished = task_wait.wait(task_id)
    if finished is None:
        return jsonify({"task": task_wait.running(task_id)}), 202
    if finished.state != TaskState.COMPLETED.value:
        raise task_wait.failure(finished, "disabling root")
    return Response(status=204)


@blueprint.get(f"{BASE}/root")
def root_enabled(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        return jsonify({"rootEnabled": instance.root_enabled_at is not None})
