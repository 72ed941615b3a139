"""Bodies of ``/instances``: create (from scratch, from a backup, or as replicas), update,
and the actions (restart, resize, promote, eject, reset_status)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from api.schemas.base import Body, IntLike, Request, documented, optional
from api.schemas.databases import NewDatabase, NewUser
from cellar import catalog, replica_sets

INSTANCES = "/v1.0/<project_id>/instances"
INSTANCE = f"{INSTANCES}/<instance_id>"
FLAVORS = ", ".join(catalog.FLAVORS)
MAX_ITEMS = 50


class Volume(Body):
    """The data volume."""

    size: IntLike = documented(..., minimum=1, maximum=catalog.MAX_VOLUME_GB)


class Datastore(Body):
    """The engine and its version; left out, the first datastore's default version."""

    blank_is_unset = ("type", "version")

    type: StrictStr | None = Field(
        None, description=f"a datastore's name ({', '.join(catalog.DATASTORES)})"
    )
    version: StrictStr | StrictInt | StrictFloat | None = Field(
        None, description="a version's name or id (a number is read as its text)"
    )


class FlavorLink(Body):
    """openstacksdk's flavor: an object with the flavor's id."""

    id: StrictStr | StrictInt | None = None


class RestorePoint(Body):
    """The backup to restore, and with PostgreSQL or MariaDB a moment after it."""

    blank_is_unset = ("restore_time",)

    backupRef: StrictStr = Field(description="a COMPLETED backup's id")
    restore_time: StrictStr | None = Field(
        None, description="an RFC 3339 time with its zone, e.g. 2026-11-25T09:30:00Z"
    )


class Replication(Body):
    """Cellar's settings of a replica set."""

    closed = True

    mode: Literal["async", "sync"] | None = None
    auto_failover: StrictBool | None = None


class Access(Body):
    """Trove's network access: a public address or not, and the networks let in."""

    closed = True

    is_public: StrictBool = optional()
    allowed_cidrs: list[StrictStr] = documented(
        description="a list of networks like 10.0.0.0/24", maxItems=50
    )


class Tls(Body):
    """Whether the engine refuses connections without TLS."""

    closed = True

    required: StrictBool = optional()


class NewInstance(Body):
    """An instance to make: from scratch, from a backup (``restorePoint``) or as
    ``replica_count`` replicas of another (``replica_of``)."""

    name: StrictStr = Field(max_length=255)
    flavorRef: StrictStr | StrictInt | None = Field(
        None, description=f"a flavor's id ({FLAVORS}), or a link that ends in one"
    )
    flavor: FlavorLink | StrictStr | StrictInt | None = Field(
        None, description="openstacksdk's flavorRef: a flavor's id, or {\"id\": ...}"
    )
    volume: Volume | None = None
    datastore: Datastore | None = None
    configuration: StrictStr | None = Field(None, description="a configuration group's id")
    databases: list[NewDatabase] | None = documented(maxItems=MAX_ITEMS)
    users: list[NewUser] | None = documented(maxItems=MAX_ITEMS)
    restorePoint: RestorePoint | None = None
    replica_of: StrictStr | None = Field(None, description="the id of the instance to replicate")
    replica_count: IntLike | None = documented(minimum=1, maximum=replica_sets.MAX_REPLICAS)
    replication: Replication | None = None
    access: Access = optional()
    tls: Tls = optional()

    @model_validator(mode="before")
    @classmethod
    def _read_members(cls, data: Any) -> Any:
        """Only the members the route reads for this kind of create. A replica copies its
        source: it reads no ``flavor``, a false ``flavorRef`` means the source's, and
        ``databases``, ``users`` and ``restorePoint`` may be given only empty. A create
        from a backup, or a replica, reads ``datastore`` only as an object (to compare it
        with the source); ``flavor`` is read only without ``flavorRef``."""
        if not isinstance(data, dict):
            return data
        skipped = {"flavor"}
        if data.get("replica_of") not in (None, ""):
            for key in ("databases", "users", "restorePoint"):
                if key in data and data[key] in (None, [], ""):
                    skipped.add(key)
            if not data.get("flavorRef"):
                skipped.add("flavorRef")
            copied = True
        else:
            if "flavorRef" not in data:
                skipped.discard("flavor")
            if data.get("restorePoint") in (None, {}, ""):
                skipped.add("restorePoint")
            copied = "restorePoint" not in skipped
        if copied and not isinstance(data.get("datastore"), dict):
            skipped.add("datastore")
        return {k: v for k, v in data.items() if k not in skipped}


class CreateInstance(Request):
    """``POST /instances``."""

    wrapper = "instance"

    instance: NewInstance


class InstanceChanges(Body):
    """What an update changes: the name, the configuration group (null detaches it), a
    replica's primary (null detaches the replica), its replication, access or TLS."""

    closed = True
    schema_extra = {"minProperties": 1}

    name: StrictStr = optional(max_length=255)
    configuration: StrictStr | None = Field(
        None, description="a configuration group's id, or null to detach the group"
    )
    replica_of: None = Field(None, description="null, which detaches a replica")
    replication: Replication | None = None
    access: Access = optional()
    tls: Tls = optional()


class UpdateInstance(Request):
    """``PUT /instances/{id}``."""

    wrapper = "instance"

    instance: InstanceChanges


class Resize(Body):
    """A resize: of the flavor, or of the volume (it only grows)."""

    closed = True
    schema_extra = {"minProperties": 1, "maxProperties": 1}

    flavorRef: StrictStr | StrictInt | None = Field(
        None, description=f"a flavor's id ({FLAVORS}), or a link that ends in one"
    )
    volume: Volume = optional()


class InstanceAction(Request):
    """``POST /instances/{id}/action``: one action, e.g. ``{"restart": {}}``."""

    closed = True
    schema_extra = {"minProperties": 1, "maxProperties": 1}

    restart: Any = Field(None, description="{}: restarts the engine")
    resize: Resize = optional()
    promote_to_replica_source: Any = Field(None, description="{}: a switchover to this replica")
    eject_replica_source: Any = Field(None, description="{}: a failover from this dead primary")
    reset_status: Any = Field(
        None, description='{} (troveclient may add "force_delete"): stops the unfinished change'
    )


BODIES: dict[tuple[str, str], type[Request]] = {
    ("POST", INSTANCES): CreateInstance,
    ("PUT", INSTANCE): UpdateInstance,
    ("POST", f"{INSTANCE}/action"): InstanceAction,
}
