"""Provisioning: from an instance row to a running, prepared engine container."""

from __future__ import annotations

import logging

from cellar import catalog, pki
from cellar.access import Access
from cellar.models import utcnow
from cellar.status import InstanceStatus
from cellar.workflows import WorkflowName
from taskmanager import certificates, network_access
from taskmanager.agent_client import NewUser
from taskmanager.context import StepContext
from taskmanager.drivers.base import ContainerSpec
from taskmanager.drivers.docker import ImageMissing
from taskmanager.workflow import NEXT, Decision, Nap, Step, StepFailed, Workflow
from taskmanager.workflows import replica, restore
from taskmanager.workflows.common import agent_call, mark_active, poll, seconds_left

logger = logging.getLogger(__name__)

DATA_PATH = "/var/lib/cellar/data"
AGENT_WAIT_SLICE = 10.0


def create_volume(ctx: StepContext) -> Decision:
    instance = ctx.instance
    compute = ctx.services.compute
    compute.ensure_network(instance.project_id)
    compute.ensure_volume(instance.id, instance.project_id, instance.volume_size)
    return NEXT


def start_container(ctx: StepContext) -> Decision:
    instance = ctx.instance
    settings = ctx.services.settings
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    flavor = catalog.FLAVORS[instance.flavor_id]
    if version is None:
        raise StepFailed(f"datastore version {instance.datastore_version} is no longer offered")
    authority = pki.Authority.from_home(settings.home)
    tls_dir, _ = certificates.ensure(authority, settings, instance.id, instance.tls_required)
    access = Access.of(instance.access)
    spec = ContainerSpec(
        instance_id=instance.id,
        project_id=instance.project_id,
        image=f"{settings.image_prefix}/{version.image}:{version.name}",
        memory_mb=flavor.ram_mb,
        vcpus=flavor.vcpus,
        engine_port=version.port,
        agent_port=catalog.AGENT_PORT,
        data_path=DATA_PATH,
        publish_host=network_access.publish_host(settings, access),
        allowed_cidrs=access.allowed_cidrs,
        request_id=ctx.task.request_id,
        tls_dir=str(tls_dir),
    )
    try:  # the network exists: create_volume, always run before, made it
        ports = ctx.services.compute.ensure_container(spec)
    except ImageMissing as exc:
        raise StepFailed(f"{exc.message}; build it with `make images`") from exc
    instance.host = network_access.address(settings, access)
    instance.port = ports.engine
    instance.agent_port = ports.agent
    return NEXT


def wait_for_agent(ctx: StepContext) -> Decision:
    agent = ctx.agent
    if poll(lambda: agent.is_serving(timeout=0.5), within=AGENT_WAIT_SLICE):
        return NEXT
    state = ctx.services.compute.container_state(ctx.instance.id)
    if state is None:
        raise StepFailed("the instance's container disappeared while starting")
    logger.info("agent of %s not serving yet (container %s)", ctx.instance.id, state)
    return Nap(0.1)


def start_instance(ctx: StepContext) -> Decision:
    """The volume, the container and a serving agent, in one step: each part finds its
    earlier work when the step runs again, and one step is one hop fewer to wait for."""
    create_volume(ctx)
    start_container(ctx)
    return wait_for_agent(ctx)


def prepare(ctx: StepContext) -> Decision:
    instance = ctx.instance
    params = ctx.task.params
    secret = ctx.secret()
    users = [
        NewUser(
            name=u["name"],
            password=secret[f"user:{u['name']}"],
            databases=tuple(u.get("databases", ())),
            host=u.get("host", ""),
        )
        for u in params.get("users", [])
    ]
    left = seconds_left(ctx.task.step_started_at, ctx.services.settings.build_deadline)
    timeout = min(left, 120.0)
    status = agent_call(
        lambda: ctx.agent.prepare(
            [d["name"] for d in params.get("databases", [])],
            users,
            catalog.FLAVORS[instance.flavor_id].ram_mb,
            timeout,
            params.get("configuration") or {},
            restored=bool(params.get("restore")) or replica.restored_by_seed(ctx),
            restore_time=(params.get("restore") or {}).get("restore_time", ""),
            replica_of=replica.replica_source(ctx),
        )
    )
    if status == "HEALTHY":
        if ctx.last_step:  # a replica turns ACTIVE once it has joined its set
            mark_active(instance)
        return NEXT
    state, detail = agent_call(ctx.agent.status)
    if state == "FAILED":
        raise StepFailed(f"the engine could not be prepared: {detail}")
    return Nap(0.2)


def _failed(ctx: StepContext, reason: str) -> None:
    instance = ctx.instance
    if instance.deleted_at is None and instance.status == InstanceStatus.BUILD.value:
        instance.status = InstanceStatus.ERROR.value
        instance.fault = reason
        instance.fault_at = utcnow()


START_INSTANCE = Step(
    "start_instance", start_instance, "build_deadline", "starting the container and its agent"
)
PREPARE = Step("prepare", prepare, "build_deadline", "preparing the database engine")

PROVISION = Workflow(WorkflowName.PROVISION, (START_INSTANCE, PREPARE), on_failure=_failed)

# From a backup: every backup of the chain is checked before anything is created.
PROVISION_RESTORE = Workflow(
    WorkflowName.PROVISION_RESTORE,
    (
        Step(
            "check_backups",
            restore.check_backups,
            "backup_deadline",
            "checking the backups to restore",
        ),
        START_INSTANCE,
        Step("restore_data", restore.restore_data, "backup_deadline", "restoring the backups"),
        PREPARE,
    ),
    on_failure=_failed,
)

# A replica: a fresh backup of its primary is copied in, then it joins the set.
PROVISION_REPLICA = Workflow(
    WorkflowName.PROVISION_REPLICA,
    (
        START_INSTANCE,
        Step(
            "seed_replica",
            replica.seed_replica,
            "backup_deadline",
            "copying the primary into the replica",
        ),
        PREPARE,
        Step(
            "join_replica_set",
            replica.join_replica_set,
            120,
            "letting the replica in at its primary and its endpoint",
        ),
    ),
    on_failure=_failed,
)
