"""The built-in flavors and datastores that Cellar offers."""

from __future__ import annotations

import dataclasses
import uuid


@dataclasses.dataclass(frozen=True)
class Flavor:
    id: str
    name: str
    ram_mb: int
    vcpus: float


FLAVORS: dict[str, Flavor] = {
    f.id: f
    for f in (
        Flavor("1", "tiny", 256, 0.5),
        Flavor("2", "small", 512, 1.0),
        Flavor("3", "medium", 1024, 1.0),
        Flavor("4", "large", 2048, 2.0),
    )
}


@dataclasses.dataclass(frozen=True)
class DatastoreVersion:
    datastore: str
    name: str
    image: str  # image repository name; the tag is the version name
    port: int  # the engine's port inside the container
    reserved_databases: frozenset[str]
    reserved_users: frozenset[str]
    has_databases: bool = True  # False where the engine has no named databases (Redis)
    has_user_hosts: bool = False  # True where a user is bound to a client host (MariaDB)
    has_incremental_backups: bool = False  # True where a backup can build on its parent
    archive_format: str = ""  # the continuous archive's files ("wal", "binlog"): PITR
    backup_format: str = "tar"  # how a full backup's bytes are packed
    replicas_copy_themselves: bool = False  # a replica's first sync is its seed (Redis)
    has_sync_replication: bool = False  # commits can wait for a replica (PostgreSQL)
    users_replicate: bool = True  # False: replicas copy users when told to follow (Redis)

    @property
    def id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cellar:{self.datastore}:{self.name}"))


@dataclasses.dataclass(frozen=True)
class Datastore:
    name: str
    versions: tuple[DatastoreVersion, ...]

    @property
    def id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cellar:{self.name}"))

    @property
    def default_version(self) -> DatastoreVersion:
        return self.versions[0]

    def version(self, name_or_id: str) -> DatastoreVersion | None:
        for version in self.versions:
            if name_or_id in (version.name, version.id):
                return version
        return None


DATASTORES: dict[str, Datastore] = {
    "postgresql": Datastore(
        "postgresql",
        (
            DatastoreVersion(
                datastore="postgresql",
                name="15",
                image="postgresql",
                port=5432,
                reserved_databases=frozenset({"postgres", "template0", "template1"}),
                reserved_users=frozenset({"postgres", "cellar", "cellar_repl", "public", "root"}),
                has_incremental_backups=True,
                archive_format="wal",
                has_sync_replication=True,
            ),
        ),
    ),
    "mariadb": Datastore(
        "mariadb",
        (
            DatastoreVersion(
                datastore="mariadb",
                name="10.11",
                image="mariadb",
                port=3306,
                reserved_databases=frozenset(
                    {"mysql", "information_schema", "performance_schema", "sys", "lost_found"}
                ),
                reserved_users=frozenset(
                    {"root", "mysql", "mariadb_sys", "cellar", "cellar_repl", "public"}
                ),
                has_user_hosts=True,
                has_incremental_backups=True,
                archive_format="binlog",
                backup_format="xbstream",
            ),
        ),
    ),
    "redis": Datastore(
        "redis",
        (
            DatastoreVersion(
                datastore="redis",
                name="7.0",
                image="redis",
                port=6379,
                reserved_databases=frozenset(),
                reserved_users=frozenset({"default", "cellar", "cellar_repl", "root"}),
                has_databases=False,
                replicas_copy_themselves=True,
                users_replicate=False,
            ),
        ),
    ),
}

# The engine's superuser, as root enable names it.
ROOT_USERS = {"postgresql": "postgres", "mariadb": "root", "redis": "default"}

AGENT_PORT = 50051
MAX_VOLUME_GB = 1024  # the largest volume an instance may ask for


def find_datastore(name_or_id: str) -> Datastore | None:
    for datastore in DATASTORES.values():
        if name_or_id in (datastore.name, datastore.id):
            return datastore
    return None
