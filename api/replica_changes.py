"""Instance changes of replica sets: creating replicas, changing a set's primary
(switchover, failover) and its replication settings. Called by ``api.instances``."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from api import audit, replicas
from api.idempotency import claim
from api.instance_checks import (
    busy_check,
    configuration_for,
    configuration_values,
    find_flavor,
    load_instance,
)
from api.views import instance_view
from cellar import catalog, quotas
from cellar.models import Instance, new_id
from cellar.status import InstanceStatus
from cellar.tasks import start_task
from cellar.workflows import WorkflowName


def create_replicas(
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
        find_flavor(data["flavorRef"])
        if data.get("flavorRef")
        else catalog.FLAVORS[source.flavor_id]
    )
    version = catalog.DATASTORES[source.datastore].version(source.datastore_version)
    assert version is not None
    size = replicas.volume_size(data, source)
    # the primary's group unless another is named: a standby needs settings such as
    # max_connections at least as high as its primary's
    wanted = data["configuration"] if "configuration" in data else source.configuration_id
    config = configuration_for(session, project_id, wanted, version)
    ids = [new_id() for _ in range(replica_plan.count)]
    claim(session, ids[0])
    asked = quotas.for_instances(replica_plan.count, flavor, size)
    quotas.reserve(session, svc.settings, project_id, asked)
    replica_set = replicas.join(svc.secrets, session, replica_plan)
    made: list[tuple[Instance, str]] = []
    for number, instance_id in enumerate(ids):
        instance = Instance(
            id=instance_id,
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
            access=source.access,  # a replica is reached like its source
            tls_required=source.tls_required,
        )
        session.add(instance)
        task = start_task(
            session,
            svc.secrets,
            project_id=project_id,
            workflow=WorkflowName.PROVISION_REPLICA,
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


def change_primary(svc: Any, project_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    """A switchover (run on the replica to promote) or a failover (run on the dead primary)."""
    params: dict[str, object]
    with svc.db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        if name == "promote_to_replica_source":
            replica_set = replicas.check_promote(session, instance)
            old = session.get(Instance, replica_set.primary_id)
            assert old is not None
            old.status = instance.status = InstanceStatus.PROMOTE.value
            workflow, params = WorkflowName.SWITCHOVER, {"set_id": replica_set.id}
        else:
            replica_set = replicas.check_eject(session, instance)
            instance.status = InstanceStatus.EJECT.value
            workflow, params = WorkflowName.FAILOVER, {"set_id": replica_set.id, "kind": "failover"}
        task = start_task(
            session, svc.secrets, project_id=project_id, workflow=workflow, request_id=g.request_id,
            instance_id=instance.id, params=params,
        )  # fmt: skip
        audit.record(session, project_id, f"instance.{name}", "instance", instance.id,
                     {**params, "task_id": task.id})  # fmt: skip
    svc.enqueue(task.id, 0.0, g.request_id)
    return "", 202


def replication_settings(
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
        session,
        svc.secrets,
        project_id=instance.project_id,
        workflow=WorkflowName.REPLICATION_MODE,
        request_id=g.request_id,
        instance_id=instance.id,
    ).id
