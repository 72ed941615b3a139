"""/instances: create, list, show and delete database instances."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from api import access as api_access
from api import audit, body, instance_tls, mgmt, replica_changes, replicas, specs
from api.idempotency import claim, idempotent
from api.instance_checks import (
    MAX_VOLUME_GB,
    busy_check,
    configuration_for,
    configuration_values,
    datastore_version,
    find_flavor,
    flavor_of,
    load_instance,
    volume_size,
)
from api.pages import Pages
from api.restore_points import restore_point
from api.schemas import parse
from api.schemas.instances import CreateInstance, InstanceAction, UpdateInstance
from api.state import services
from api.views import (
    instance_view,
    links,
    running_task,
    timestamp,
)
from cellar import catalog, quotas
from cellar.access import Access
from cellar.errors import InvalidInput
from cellar.models import Instance, new_id
from cellar.status import InstanceStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName

logger = logging.getLogger(__name__)

blueprint = Blueprint("instances", __name__)

UNSUPPORTED = ("modules",)
PAGE_MAX = 1000


def _shown(session: Session, instance_id: str) -> dict[str, Any]:
    instance = session.get(Instance, instance_id)
    assert instance is not None
    return {"instance": instance_view(session, instance)}


@blueprint.post("/v1.0/<project_id>/instances")
@idempotent("instance", 202, _shown)
def create(project_id: str) -> ResponseReturnValue:
    data = parse(CreateInstance)
    for field in UNSUPPORTED:
        if data.get(field) not in (None, [], ""):
            raise InvalidInput(f"{field} is not supported by this Cellar release")
    name = body.text(data, "name")
    svc = services()
    with svc.db.session() as session:
        replica_plan = replicas.plan(session, project_id, data)
        if replica_plan is not None:
            return replica_changes.create_replicas(
                svc, session, project_id, name, data, replica_plan
            )
    flavor = find_flavor(data.get("flavorRef", flavor_of(data.get("flavor"))))
    with svc.db.session() as session:
        restore = restore_point(session, project_id, data.get("restorePoint"))
    if restore is None:
        version = datastore_version(data.get("datastore"))
        size = volume_size(data.get("volume"))
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
        instance_id = new_id()
        claim(session, instance_id)
        config = configuration_for(session, project_id, data.get("configuration"), version)
        quotas.reserve(session, svc.settings, project_id, quotas.for_instances(1, flavor, size))
        instance = Instance(
            id=instance_id,
            configuration_id=config.id if config else None,
            project_id=project_id,
            name=name,
            flavor_id=flavor.id,
            datastore=version.datastore,
            datastore_version=version.name,
            volume_size=size,
            status=InstanceStatus.BUILD.value,
            tls_required=instance_tls.requested(data) if "tls" in data else False,
            access=(api_access.requested(data) if "access" in data else Access()).stored(),
        )
        session.add(instance)
        task = start_task(
            session,
            svc.secrets,
            project_id=project_id,
            workflow=WorkflowName.PROVISION_RESTORE if restore else WorkflowName.PROVISION,
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
                "tls_required": instance.tls_required,
                "access": instance.access,
                "task_id": task.id,
            },
        )
        session.flush()
        view = instance_view(session, instance)
    svc.enqueue(task.id, 0.0, g.request_id)
    return jsonify({"instance": view}), 202


@blueprint.get("/v1.0/<project_id>/instances")
@blueprint.get("/v1.0/<project_id>/instances/detail")
def list_all(project_id: str) -> ResponseReturnValue:
    limit = body.integer(request.args.get("limit", PAGE_MAX), "limit", 1, PAGE_MAX)
    marker = request.args.get("marker")
    with services().db.session() as session:
        after = None
        if marker:
            found = load_instance(session, project_id, marker)
            after = (found.created, found.id)
        pages: Pages = current_app.extensions["cellar_pages"]
        root = request.host_url.rstrip("/")
        shown = pages.page(session, project_id, after, limit + 1, root)
    more = b""
    if len(shown) > limit:
        href = links(f"/v1.0/{project_id}/instances")[0]["href"]
        last = orjson.loads(shown[limit - 1])["id"]
        more = b',"links":' + orjson.dumps(
            [{"rel": "next", "href": f"{href}?limit={limit}&marker={last}"}]
        )
    page = b"[" + b",".join(shown[:limit]) + b"]"
    return Response(b'{"instances":' + page + more + b"}", mimetype="application/json")


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>")
def show(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        view = instance_view(session, instance)
        # the agent's last answer; shown here only, so that lists stay kept between beats
        view["service_status_updated"] = timestamp(instance.health_checked_at)
        return jsonify({"instance": view})


@blueprint.delete("/v1.0/<project_id>/instances/<instance_id>")
def delete(project_id: str, instance_id: str) -> ResponseReturnValue:
    svc = services()
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        current = running_task(session, instance.id)
        if current is not None and current.workflow == WorkflowName.DELETE:
            return "", 202
        replicas.check_delete(session, instance)
        instance.status = InstanceStatus.SHUTDOWN.value
        task = start_task(
            session,
            svc.secrets,
            project_id=project_id,
            workflow=WorkflowName.DELETE,
            request_id=g.request_id,
            instance_id=instance.id,
        )
        audit.record(
            session, project_id, "instance.delete", "instance", instance.id, {"task_id": task.id}
        )
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


ACTIONS = (
    "restart",
    "resize",
    "promote_to_replica_source",
    "eject_replica_source",
    "reset_status",
)


def _resize(
    instance: Instance, spec: object, volume_backend: str
) -> tuple[dict[str, object], WorkflowName]:
    """The params and workflow of a resize: of the flavor, or of the volume (grow only)."""
    if not isinstance(spec, dict) or set(spec) - {"flavorRef", "volume"} or len(spec) != 1:
        raise InvalidInput(
            'resize takes either {"flavorRef": ...} or {"volume": {"size": ...}}, not both'
        )
    if "volume" in spec:
        return _resize_volume(instance, spec["volume"], volume_backend), WorkflowName.RESIZE_VOLUME
    flavor = find_flavor(spec.get("flavorRef"))
    if flavor.id == instance.flavor_id:
        raise InvalidInput(f"instance {instance.id} already has flavor {flavor.id}")
    return {
        "flavor_id": flavor.id,
        "from_flavor_id": instance.flavor_id,
    }, WorkflowName.RESIZE_FLAVOR


def _grows(instance: Instance, params: dict[str, object]) -> dict[quotas.Resource, int]:
    """What a resize adds to the project's volumes or RAM (a smaller flavor adds none)."""
    size = params.get("size")
    if isinstance(size, int):
        return {quotas.Resource.VOLUMES: size - instance.volume_size}
    grown = quotas.ram_mb(params.get("flavor_id")) - quotas.ram_mb(instance.flavor_id)
    return {quotas.Resource.RAM: grown}


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
    data = parse(InstanceAction)
    name = next(iter(data)) if len(data) == 1 else None
    if name not in ACTIONS:
        allowed = ", ".join(ACTIONS)
        raise InvalidInput(f'name one action, e.g. {{"restart": {{}}}}; actions: {allowed}')
    svc = services()
    if name in ("promote_to_replica_source", "eject_replica_source"):
        return replica_changes.change_primary(svc, project_id, instance_id, name)
    if name == "reset_status":
        mgmt.reset_status(svc, project_id, instance_id, data[name])
        return "", 202
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        busy_check(session, instance)
        if name == "resize":
            params, workflow = _resize(instance, data[name], svc.settings.volume_backend)
            quotas.reserve(session, svc.settings, project_id, _grows(instance, params))
            status = InstanceStatus.RESIZE.value
        else:
            params, workflow, status = {}, WorkflowName.RESTART, InstanceStatus.REBOOT.value
        instance.status = status
        task = start_task(
            session,
            svc.secrets,
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


UPDATABLE = {"name", "configuration", "replica_of", "replication", "access", "tls"}


@blueprint.put("/v1.0/<project_id>/instances/<instance_id>")
def update(project_id: str, instance_id: str) -> ResponseReturnValue:
    """Rename, attach (``configuration``: id) or detach (``configuration``: null) a group,
    detach a replica, or change its replication, network ``access`` or ``tls`` policy."""
    data = parse(UpdateInstance)
    unknown = set(data) - UPDATABLE
    if unknown or not data:
        raise InvalidInput(
            "an instance update takes name, configuration, replica_of (null), replication, "
            f"access and tls, not {sorted(unknown)}"
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
                session,
                svc.secrets,
                project_id=project_id,
                workflow=WorkflowName.DETACH,
                request_id=g.request_id,
                instance_id=instance.id,
            ).id
        if "replication" in data:
            task_id = (
                replica_changes.replication_settings(svc, session, instance, data["replication"])
                or task_id
            )
        if "name" in data:
            instance.name = body.text(data, "name")
        if "configuration" in data:
            busy_check(session, instance)
            version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
            assert version is not None
            config = configuration_for(session, project_id, data["configuration"], version)
            instance.configuration_id = config.id if config else None
            task_id = start_task(
                session,
                svc.secrets,
                project_id=project_id,
                workflow=WorkflowName.APPLY_CONFIGURATION,
                request_id=g.request_id,
                instance_id=instance.id,
                params={
                    "values": configuration_values(config),
                    "configuration_id": instance.configuration_id,
                },
            ).id
        started = [task_id] if task_id is not None else []
        if "access" in data or "tls" in data:
            busy_check(session, instance)
            if "access" in data:
                current = Access.of(instance.access)
                instance.access = api_access.requested(data, current).stored()
            if "tls" in data:
                instance.tls_required = instance_tls.requested(data)
            task_id = start_task(
                session,
                svc.secrets,
                project_id=project_id,
                workflow=WorkflowName.APPLY_ACCESS,
                request_id=g.request_id,
                instance_id=instance.id,
            ).id
            started.append(task_id)
        audit.record(session, project_id, "instance.update", "instance", instance.id,
                     {**data, "task_id": task_id})  # fmt: skip
    for each in started:
        svc.enqueue(each, 0.0, g.request_id)
    return "", 202
