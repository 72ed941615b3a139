"""What creating and changing instances check: the instance exists here, the flavor,
datastore, configuration group and volume asked for are offered, no other task owns it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import body
from cellar import catalog, parameters
from cellar.errors import Busy, InvalidInput, NotFound
from cellar.models import Configuration, Instance, Task
from cellar.status import IN_SERVICE, TaskState
from cellar.workflows import WorkflowName

MAX_VOLUME_GB = catalog.MAX_VOLUME_GB
READY = IN_SERVICE
PROVISIONS = (
    WorkflowName.PROVISION,
    WorkflowName.PROVISION_RESTORE,
    WorkflowName.PROVISION_REPLICA,
)


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


def flavor_of(value: object) -> object:
    """openstacksdk's ``flavor`` (an id, or an object with one) for Trove's ``flavorRef``."""
    return value.get("id") if isinstance(value, dict) else value


def find_flavor(value: object) -> catalog.Flavor:
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


def configuration_for(
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


def volume_size(value: object) -> int:
    if not isinstance(value, dict) or "size" not in value:
        raise InvalidInput(f'volume is required: {{"size": 1..{MAX_VOLUME_GB}}} (GB)')
    return body.integer(value["size"], "volume.size", 1, MAX_VOLUME_GB)


def busy_check(session: Session, instance: Instance) -> None:
    """Refuse (422) a change while the instance is not ready or another task owns it."""
    if instance.status not in READY:
        raise Busy(f"instance {instance.id} is {instance.status}; this action needs it ACTIVE")
    task = session.scalars(
        select(Task).where(
            Task.instance_id == instance.id,
            Task.state == TaskState.RUNNING.value,
            Task.workflow.in_((*PROVISIONS, WorkflowName.DELETE)),
        )
    ).first()
    if task is not None:
        raise Busy(f"instance {instance.id} is busy with task {task.id} ({task.workflow})")
