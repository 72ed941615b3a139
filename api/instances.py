"""/instances: create, list, show and delete database instances."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, body, replicas, specs
from api.restore_points import restore_point
from api.state import services
from api.views import instance_view, links, running_task
from cellar import catalog, parameters
from cellar.errors import Busy, InvalidInput, NotFound
from cellar.models import Configuration, Instance, Task, new_id
from cellar.status import InstanceStatus, TaskState
from taskmanager.runner import start_task

logger = logging.getLogger(__name__)

blueprint = Blueprint("instances", __name__)

UNSUPPORTED = ("modules",)
MAX_VOLUME_GB = catalog.MAX_VOLUME_GB
PAGE_MAX = 1000
READY = (InstanceStatus.ACTIVE.value, InstanceStatus.RESTART_REQUIRED.value)


def load_instance(session: Session, project_id: str, instance_id: str) -> Instance:
    instance = session.get(Instance, instance_id)
    if (
        instance is None
        or instance.project_id != project_id
        or instance.deleted_at is not None
        or instance.purpose is not None  # scratch instances of backup checks are Cellar's own
    ):
        raise NotFound(f"instance {instance_id} does not exist in project {project_id}")
    return instance


def _flavor(value: object) -> catalog.Flavor:
    if value is None:
        raise InvalidInput(f"flavorRef is required; flavors are {', '.join(catalog.FLAVORS)}")
    key = str(value).rstrip("/").rsplit("/", 1)[-1]
    flavor = catalog.FLAVORS.get(key)
    if flavor is None:
        raise InvalidInput(
            f"flavorRef {value!r} is not a known flavor; flavors are {', '.join(catalog.FLAVORS)}"
        )
    return flavor


def datastore_version(value: object) -> catalog.DatastoreVersion:
    allowed = ", ".join(catalog.DATASTORES)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidInput('datastore must be an object {"type": ..., "version": ...}')
    name = value.get("type") or next(iter(catalog.DATASTORES))
    datastore = catalog.find_datastore(str(name))
    if datastore is None:
        raise InvalidInput(f"datastore type {name!r} is not offered; datastores are {allowed}")
    requested = value.get("version")
    if not requested:
        return datastore.default_version
    version = datastore.version(str(requested))
    if version is None:
        versions = ", ".join(v.name for v in datastore.versions)
        raise InvalidInput(
            f"datastore {datastore.name} has no version {requested!r}; versions are {versions}"
        )
    return version


def _configuration_for(
    session: Session, project_id: str, config_id: object, version: catalog.DatastoreVersion
) -> Configuration | None:
    """The configuration group ``config_id`` if it suits ``version`` (None for none)."""
    if config_id in (None, ""):
        return None
    config = session.get(Configuration, str(config_id))
    if config is None or config.project_id != project_id or config.deleted_at is not None:
        raise NotFound(f"configuration {config_id} does not exist in project {project_id}")
    if (config.datastore, config.datastore_version) != (version.datastore, version.name):
        raise InvalidInput(
            f"configuration {config.id} is for {config.datastore} {config.datastore_version}, "
            f"not {version.datastore} {version.name}"
        )
    return config


def configuration_values(config: Configuration | None) -> dict[str, str]:
    if config is None:
        return {}
    return parameters.check_values(config.datastore, config.datastore_version, config.values)


def _volume(value: object) -> int:
    if not isinstance(value, dict) or "size" not in value:
        raise InvalidInput(f'volume is required: {{"size": 1..{MAX_VOLUME_GB}}} (GB)')
    return body.integer(value["size"], "volume.size", 1, MAX_VOLUME_GB)


@blueprint.post("/v1.0/<project_id>/instances")
def create(project_id: str) -> ResponseReturnValue:
    data = body.json_object("instance")
    for field in UNSUPPORTED:
        if data.get(field) not in (None, [], ""):
            raise InvalidInput(f"{field} is not supported by this Cellar release")
    name = body.text(data, "name")
    svc = services()
    with svc.db.session() as session:
        replica_plan = replicas.plan(session, project_id, data)
        if replica_plan is not None:
            return _create_replicas(svc, session, project_id, name, data, replica_plan)
    flavor = _flavor(data.get("flavorRef"))
    with svc.db.session() as session:
        restore = restore_point(session, project_id, data.get("restorePoint"))
    if restore is None:
        version = datastore_version(data.get("datastore"))
        size = _volume(data.get("volume"))
    else:
        version, size = restore.fit(data.get("datastore"), data.get("volume"))
    dbs = specs.databases(body.object_list(data, "databases"), version)
    users, passwords = specs.users(body.object_list(data, "users"), version)
    known = {d["name"] for d in dbs}
    for user in users:
        missing = [d for d in user["databases"] if d not in known]
        if missing:
            raise InvalidInput(
                f"user {user['name']!r} is granted database {missing[0]!r}, "
                "which is not in this request's databases"
            )
    with svc.db.session() as session:
        config = _configuration_for(session, project_id, data.get("configuration"), version)
        instance = Instance(
            id=new_id(),
            configuration_id=config.id if config else None,
            project_id=project_id,
            name=name,
            flavor_id=flavor.id,
            datastore=version.datastore,
            datastore_version=version.name,
            volume_size=size,
            status=InstanceStatus.BUILD.value,
        )
        session.add(instance)
        task = start_task(
            svc,
            session,
            project_id=project_id,
            workflow="provision_restore" if restore else "provision",
            request_id=g.request_id,
            instance_id=instance.id,
            params={
                "databases": dbs,
                "users": users,
                "configuration": configuration_values(config),
                **({"restore": restore.params()} if restore else {}),
            },
            secret=passwords,
        )
        audit.record(
            session,
            project_id,
            "instance.create",
            "instance",
            instance.id,
            {
                "name": name,
                "flavor": flavor.id,
                "datastore": version.datastore,
                "version": version.name,
                "volume_size": size,
                "databases": sorted(known),
                "users": [u["name"] for u in users],
                "restored_from": restore.chain[-1] if restore else None,
                "task_id": task.id,
            },
        )
        session.flush()
        view = instance_view(session, instance)
    svc.enqueue(task.id, 0.0, g.request_id)
    return jsonify({"instance": view}), 202


def _create_replicas(
    svc: Any,
    session: Session,
    project_id: str,
    name: str,
    data: dict[str, Any],
    replica_plan: replicas.ReplicaPlan,
) -> ResponseReturnValue:
    """``replica_count`` new instances following ``replica_of``, each seeded from it."""
    source = replica_plan.source
    flavor = (
        _flavor(data["flavorRef"]) if data.get("flavorRef") else catalog.FLAVORS[source.flavor_id]
    )
    version = catalog.DATASTORES[source.datastore].version(source.datastore_version)
    assert version is not None
    size = replicas.volume_size(data, source)
    # the primary's group unless another is named: a standby needs settings such as
    # max_connections at least as high as its primary's
    wanted = data["configuration"] if "configuration" in data else source.configuration_id
    config = _configuration_for(session, project_id, wanted, version)
    replica_set = replicas.join(svc, session, replica_plan)
    made: list[tuple[Instance, str]] = []
    for number in range(replica_plan.count):
        instance = Instance(
            id=new_id(),
            configuration_id=config.id if config else None,
            project_id=project_id,
            name=name if replica_plan.count == 1 else f"{name}-{number + 1}",
            flavor_id=flavor.id,
            datastore=version.datastore,
            datastore_version=version.name,
            volume_size=size,
            status=InstanceStatus.BUILD.value,
            replica_set_id=replica_set.id,
            replica_of_id=source.id,
        )
        session.add(instance)
        task = start_task(
            svc,
            session,
            project_id=project_id,
            workflow="provision_replica",
            request_id=g.request_id,
            instance_id=instance.id,
            params={
                "replica": {"source_id": source.id},
                "configuration": configuration_values(config),
            },
        )
        made.append((instance, task.id))
        audit.record(
            session, project_id, "instance.create", "instance", instance.id,
            {"name": instance.name, "flavor": flavor.id, "datastore": version.datastore,
             "version": version.name, "volume_size": size, "replica_of": source.id,
             "replication_mode": replica_set.mode, "task_id": task.id},
        )  # fmt: skip
    session.flush()
    view = instance_view(session, made[0][0])
    session.commit()
    for _instance, task_id in made:
        svc.enqueue(task_id, 0.0, g.request_id)
    return jsonify({"instance": view}), 202


@blueprint.get("/v1.0/<project_id>/instances")
@blueprint.get("/v1.0/<project_id>/instances/detail")
def list_all(project_id: str) -> ResponseReturnValue:
    limit = body.integer(request.args.get("limit", PAGE_MAX), "limit", 1, PAGE_MAX)
    marker = request.args.get("marker")
    svc = services()
    with svc.db.session() as session:
        query = (
            select(Instance)
            .where(
                Instance.project_id == project_id,
                Instance.deleted_at.is_(None),
                Instance.purpose.is_(None),
            )
            .order_by(Instance.created, Instance.id)
        )
        if marker:
            after = load_instance(session, project_id, marker)
            query = query.where(
                (Instance.created > after.created)
                | ((Instance.created == after.created) & (Instance.id > after.id))
            )
        rows = session.scalars(query.limit(limit + 1)).all()
        views = [instance_view(session, i) for i in rows[:limit]]
    result: dict[str, Any] = {"instances": views}
    if len(rows) > limit:
        href = links(f"/v1.0/{project_id}/instances")[0]["href"]
        result["links"] = [
            {"rel": "next", "href": f"{href}?limit={limit}&marker={rows[limit - 1].id}"}
        ]
    return jsonify(result)


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>")
def show(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        return jsonify({"instance": instance_view(session, instance)})


@blueprint.delete("/v1.0/<project_id>/instances/<instance_id>")
def delete(project_id: str, instance_id: str) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        current = running_task(session, instance.id)
        if current is not None and current.workflow == "delete":
            return "", 202
        replicas.check_delete(session, instance)
        instance.status = InstanceStatus.SHUTDOWN.value
        task = start_task(
            svc,
            session,
            project_id=project_id,
            workflow="delete",
            request_id=g.request_id,
            instance_id=instance.id,
        )
        audit.record(
            session, project_id, "instance.delete", "instance", instance.id, {"task_id": task.id}
        )
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


def busy_check(session: Session, instance: Instance) -> None:
    """Refuse (422) a change while the instance is not ready or another task owns it."""
    if instance.status not in READY:
        raise Busy(f"instance {instance.id} is {instance.status}; this action needs it ACTIVE")
    task = session.scalars(
        select(Task).where(
            Task.instance_id == instance.id,
            Task.state == TaskState.RUNNING.value,
            Task.workflow.in_((*PROVISIONS, "delete")),
        )
    ).first()
    if task is not None:
        raise Busy(f"instance {instance.id} is busy with task {task.id} ({task.workflow})")


PROVISIONS = ("provision", "provision_restore", "provision_replica")
ACTIONS = ("restart", "resize", "promote_to_replica_source", "eject_replica_source")


def _resize(instance: Instance, spec: object, volume_backend: str) -> tuple[dict[str, object], str]:
    """The params and workflow of a resize: of the flavor, or of the volume (grow only)."""
    if not isinstance(spec, dict) or set(spec) - {"flavorRef", "volume"} or len(spec) != 1:
        raise InvalidInput(
            'resize takes either {"flavorRef": ...} or {"volume": {"size": ...}}, not both'
        )
    if "volume" in spec:
        return _resize_volume(instance, spec["volume"], volume_backend), "resize_volume"
    flavor = _flavor(spec.get("flavorRef"))
    if flavor.id == instance.flavor_id:
        raise InvalidInput(f"instance {instance.id} already has flavor {flavor.id}")
    return {"flavor_id": flavor.id, "from_flavor_id": instance.flavor_id}, "resize_flavor"


def _resize_volume(instance: Instance, spec: object, volume_backend: str) -> dict[str, object]:
    if volume_backend != "loop":
        raise InvalidInput(
            "volume sizes are not enforced on this Cellar (CELLAR_VOLUME_BACKEND=docker), "
            "so a volume cannot be resized"
        )
    if not isinstance(spec, dict) or "size" not in spec:
        raise InvalidInput(f'resize takes {{"volume": {{"size": 1..{MAX_VOLUME_GB}}}}} (GB)')
    size = body.integer(spec["size"], "volume.size", 1, MAX_VOLUME_GB)
    if size <= instance.volume_size:
        raise InvalidInput(
            f"volume.size must be larger than the current {instance.volume_size} GB: "
            "shrinking a volume is not supported"
        )
    return {"size": size, "from_size": instance.volume_size}


@blueprint.post("/v1.0/<project_id>/instances/<instance_id>/action")
def action(project_id: str, instance_id: str) -> ResponseReturnValue:
    data = body.json_object()
    name = next(iter(data)) if len(data) == 1 else None
    if name not in ACTIONS:
        allowed = ", ".join(ACTIONS)
        raise InvalidInput(f'name one action, e.g. {{"restart": {{}}}}; actions: {allowed}')
    svc = services()
    if name in ("promote_to_replica_source", "eject_replica_source"):
        return _change_primary(svc, project_id, instance_id, name)
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        busy_check(session, instance)
        if name == "resize":
            params, workflow = _resize(instance, data[name], svc.settings.volume_backend)
            status = InstanceStatus.RESIZE.value
        else:
            params, workflow, status = {}, "restart", InstanceStatus.REBOOT.value
        instance.status = status
        task = start_task(
            svc,
            session,
            project_id=project_id,
            workflow=workflow,
            request_id=g.request_id,
            instance_id=instance.id,
            params=params,
        )
        audit.record(
            session, project_id, f"instance.{name}", "instance", instance.id,
            {**params, "task_id": task.id},
        )  # fmt: skip
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


def _change_primary(svc: Any, project_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    """A switchover (run on the replica to promote) or a failover (run on the dead primary)."""
    params: dict[str, object]
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        if name == "promote_to_replica_source":
            replica_set = replicas.check_promote(session, instance)
            old = session.get(Instance, replica_set.primary_id)
            assert old is not None
            old.status = instance.status = InstanceStatus.PROMOTE.value
            workflow, params = "switchover", {"set_id": replica_set.id}
        else:
            replica_set = replicas.check_eject(session, instance)
            instance.status = InstanceStatus.EJECT.value
            workflow, params = "failover", {"set_id": replica_set.id, "kind": "failover"}
        task = start_task(
            svc, session, project_id=project_id, workflow=workflow, request_id=g.request_id,
            instance_id=instance.id, params=params,
        )  # fmt: skip
        audit.record(session, project_id, f"instance.{name}", "instance", instance.id,
                     {**params, "task_id": task.id})  # fmt: skip
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


def _replication_settings(
    svc: Any, session: Session, instance: Instance, value: object
) -> str | None:
    """Change a set's mode or automatic failover (on its primary); the id of the task that
    applies a new mode, if any."""
    replica_set = replicas.check_primary(session, instance)
    mode, auto = replicas.settings(value, instance.datastore)
    if auto is not None:
        replica_set.auto_failover = auto
    if mode is None or mode == replica_set.mode:
        return None
    busy_check(session, instance)
    replica_set.mode = mode
    return start_task(
        svc, session, project_id=instance.project_id, workflow="replication_mode",
        request_id=g.request_id, instance_id=instance.id,
    ).id  # fmt: skip


@blueprint.put("/v1.0/<project_id>/instances/<instance_id>")
def update(project_id: str, instance_id: str) -> ResponseReturnValue:
    """Rename, or attach (``configuration``: id) or detach (``configuration``: null) a group."""
    data = body.json_object("instance")
    unknown = set(data) - {"name", "configuration", "replica_of", "replication"}
    if unknown or not data:
        raise InvalidInput(
            "an instance update takes name, configuration, replica_of (null) and replication, "
            f"not {sorted(unknown)}"
        )
    if "replica_of" in data and data["replica_of"] is not None:
        raise InvalidInput("replica_of can only be set to null (detach); replicas are created")
    svc = services()
    task_id = None
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        if "replica_of" in data:
            replicas.check_detach(session, instance)
            busy_check(session, instance)
            instance.status = InstanceStatus.DETACH.value
            task_id = start_task(
                svc, session, project_id=project_id, workflow="detach", request_id=g.request_id,
                instance_id=instance.id,
            ).id  # fmt: skip
        if "replication" in data:
            task_id = _replication_settings(svc, session, instance, data["replication"]) or task_id
        if "name" in data:
            instance.name = body.text(data, "name")
        if "configuration" in data:
            busy_check(session, instance)
            version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
            assert version is not None
            config = _configuration_for(session, project_id, data["configuration"], version)
            instance.configuration_id = config.id if config else None
            task_id = start_task(
                svc,
                session,
                project_id=project_id,
                workflow="apply_configuration",
                request_id=g.request_id,
                instance_id=instance.id,
                params={
                    "values": configuration_values(config),
                    "configuration_id": instance.configuration_id,
                },
            ).id
        audit.record(session, project_id, "instance.update", "instance", instance.id,
                     {**data, "task_id": task_id})  # fmt: skip
    if task_id is not None:
        svc.enqueue(task_id, 0.0, g.request_id)
    return "", 202
