"""What an engine's handlers offer :class:`~guestagent.engines.base.Engine`.

The base class hands the user, database and replication calls to an engine's handlers
(``*_admin``, ``*_replication``) once the instance is prepared; these protocols say what
those handlers must answer. Each handler checks its input again itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from guestagent.engines.messages import (
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    EnableReplicationRequest,
    GrantAccessRequest,
    ReplicationState,
    RevokeAccessRequest,
    User,
)

logger = logging.getLogger(__name__)


class Admin(Protocol):
    """The users of a running server (``PostgresAdmin``, ``MariadbAdmin``, ``RedisAdmin``)."""

    def ping(self) -> None:
        """Return once the server answers; EngineError (EngineDown) otherwise."""

    def create_user(self, request: User) -> bool: ...

    def list_users(self) -> list[User]: ...

    def delete_user(self, request: DeleteUserRequest) -> bool: ...

    def count_sessions(self, request: CountSessionsRequest) -> int:
        """How many client connections the user has open now."""

    def change_password(self, request: User) -> bool: ...

    def enable_root(self, password: str) -> str: ...

    def disable_root(self) -> bool: ...

    def get_configuration(self, names: list[str]) -> dict[str, str]: ...

    def metrics(self) -> dict[str, float]:
        """The server's own values by the names of ``metrics`` (those it has), read in
        as few round trips as it allows."""


class SqlAdmin(Admin, Protocol):
    """An admin handler that also keeps named databases and the users' rights on them."""

    def create_database(self, request: Database) -> bool: ...

    def list_databases(self) -> list[Database]: ...

    def delete_database(self, request: DeleteDatabaseRequest) -> bool: ...

    def grant_access(self, request: GrantAccessRequest) -> None: ...

    def revoke_access(self, request: RevokeAccessRequest) -> bool: ...


class Replication(Protocol):
    """The replication of a running server, as far as the base class hands it on."""

    def enable(self, request: EnableReplicationRequest) -> None: ...

    def state(self) -> ReplicationState: ...
