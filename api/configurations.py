"""/configurations: named parameter sets, attached to instances of one datastore version."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body
from api.idempotency import claim, idempotent
from api.instance_checks import datastore_version
from api.schemas import parse
from api.schemas.configurations import (
    CreateConfiguration,
    EditConfiguration,
    ReplaceConfiguration,
)
from api.state import services
from api.views import links, timestamp
from cellar import catalog, parameters
from cellar.errors import InvalidInput, NotFound
from cellar.models import Configuration, Instance, new_id, utcnow
from cellar.status import InstanceStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

blueprint = Blueprint("configurations", __name__)

BASE = "/v1.0/<project_id>/configurations"
ATTACHED = (InstanceStatus.ACTIVE.value, InstanceStatus.RESTART_REQUIRED.value)


def load_configuration(session: Session, project_id: str, config_id: str) -> Configuration:
    found = session.get(Configuration, config_id)
    if found is None or found.project_id != project_id or found.deleted_at is not None:
        raise NotFound(f"configuration {config_id} does not exist in project {project_id}")
    return found


def attached(session: Session, config: Configuration) -> list[Instance]:
    return list(
        session.scalars(
            select(Instance).where(
                Instance.configuration_id == config.id, Instance.deleted_at.is_(None)
            )
        ).all()
    )


def view(session: Session, config: Configuration) -> dict[str, Any]:
    version = catalog.DATASTORES[config.datastore].version(config.datastore_version)
    return {
        "id": config.id,
        "name": config.name,
        "description": config.description,
        "values": config.values,
        "datastore_name": config.datastore,
        "datastore_version_name": config.datastore_version,
        "datastore_version_id": version.id if version else None,
        "created": timestamp(config.created),
        "updated": timestamp(config.updated),
        "instance_count": len(attached(session, config)),
        "links": links(f"/v1.0/{config.project_id}/configurations/{config.id}"),
    }


def apply_to_instances(session: Session, project_id: str, config: Configuration | None,
                       instances: list[Instance]) -> list[str]:  # fmt: skip
    """Start a task per instance that makes its parameters those of ``config``."""
    svc = services()
    values = {} if config is None else stringified(config)
    tasks = []
    for instance in instances:
        task = start_task(
            session,
            svc.secrets,
            project_id=project_id,
            workflow=WorkflowName.APPLY_CONFIGURATION,
            request_id=g.request_id,
            instance_id=instance.id,
            params={"values": values, "configuration_id": config.id if config else None},
        )
        tasks.append(task.id)
    return tasks


def stringified(config: Configuration) -> dict[str, str]:
    return parameters.check_values(config.datastore, config.datastore_version, config.values)


def _shown(session: Session, config_id: str) -> dict[str, Any]:
    config = session.get(Configuration, config_id)
    assert config is not None
    return {"configuration": view(session, config)}


@blueprint.post(BASE)
@idempotent("configuration", 200, _shown)
def create(project_id: str) -> ResponseReturnValue:
    data = parse(CreateConfiguration)
    name = body.text(data, "name")
    description = body.text(data, "description", required=False, max_len=1024)
    version = datastore_version(data.get("datastore"))
    raw = data.get("values") or {}
    checked = parameters.check_values(version.datastore, version.name, raw)
    with services().db.session() as session:
        config_id = new_id()
        claim(session, config_id)
        config = Configuration(
            id=config_id,
            project_id=project_id,
            name=name,
            description=description,
            datastore=version.datastore,
            datastore_version=version.name,
            values={k: raw[k] for k in checked},
        )
        session.add(config)
        session.flush()
        audit.record(session, project_id, "configuration.create", "configuration", config.id,
                     {"name": name, "values": config.values})  # fmt: skip
        return jsonify({"configuration": view(session, config)}), 200


@blueprint.get(BASE)
def list_all(project_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        rows = session.scalars(
            select(Configuration)
            .where(Configuration.project_id == project_id, Configuration.deleted_at.is_(None))
            .order_by(Configuration.created)
        ).all()
        return jsonify({"configurations": [view(session, c) for c in rows]})


@blueprint.get(f"{BASE}/<config_id>")
def show(project_id: str, config_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        return jsonify(
            {"configuration": view(session, load_configuration(session, project_id, config_id))}
        )


@blueprint.get(f"{BASE}/<config_id>/instances")
def instances(project_id: str, config_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        config = load_configuration(session, project_id, config_id)
        found = [{"id": i.id, "name": i.name} for i in attached(session, config)]
        return jsonify({"instances": found})


def _change(project_id: str, config_id: str, merge: bool) -> ResponseReturnValue:
    data = parse(EditConfiguration if merge else ReplaceConfiguration)
    raw = data.get("values")
    if not isinstance(raw, dict):
        raise InvalidInput('the body must be {"configuration": {"values": {...}}}')
    svc = services()
    with svc.db.session() as session:
        config = load_configuration(session, project_id, config_id)
        values = {**config.values, **raw} if merge else dict(raw)
        checked = parameters.check_values(config.datastore, config.datastore_version, values)
        config.values = {k: values[k] for k in checked}
        if not merge:
            config.name = body.text(data, "name", required=False) or config.name
            config.description = (
                body.text(data, "description", required=False, max_len=1024) or config.description
            )
        config.updated = utcnow()
        targets = [i for i in attached(session, config) if i.status in ATTACHED]
        tasks = apply_to_instances(session, project_id, config, targets)
        audit.record(session, project_id, "configuration.update", "configuration", config.id,
                     {"values": config.values, "task_ids": tasks})  # fmt: skip
    for task_id in tasks:
        svc.enqueue(task_id, 0.0, g.request_id)
    return "", 202


@blueprint.put(f"{BASE}/<config_id>")
def replace(project_id: str, config_id: str) -> ResponseReturnValue:
    return _change(project_id, config_id, merge=False)


@blueprint.patch(f"{BASE}/<config_id>")
def edit(project_id: str, config_id: str) -> ResponseReturnValue:
    return _change(project_id, config_id, merge=True)


@blueprint.delete(f"{BASE}/<config_id>")
def delete(project_id: str, config_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        config = load_configuration(session, project_id, config_id)
        users = attached(session, config)
        if users:
            raise InvalidInput(
                f"configuration {config_id} is attached to {len(users)} instance(s); "
                "detach it first"
            )
        config.deleted_at = utcnow()
        audit.record(session, project_id, "configuration.delete", "configuration", config.id, {})
    return "", 202
