"""The task manager's side of the guest agent's gRPC contract.

It extends the API's narrow read client (``cellar.agent_reads``), and like it gives
every call a deadline, the request id as metadata, and ``AgentError`` for gRPC errors.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from cellar.agent_reads import AgentReads
from cellar.errors import AgentError
from cellar.guestagent.v1 import agent_pb2

logger = logging.getLogger(__name__)

METRICS_TIMEOUT = 5.0  # the engine answers from its own counters: a slow answer is none


@dataclasses.dataclass(frozen=True)
class BackupEnd:
    """The last piece of a backup stream: where the backup ends and how it is packed."""

    checkpoint: str
    format: str


@dataclasses.dataclass(frozen=True)
class NewUser:
    """A user for the agent to create; ``access`` and ``valid_until`` as in the proto's User."""

    name: str
    password: str
    databases: tuple[str, ...] = ()
    host: str = ""
    access: str = ""  # "": every right; "read"; "write": rows, no DDL
    valid_until: str = ""  # RFC 3339, UTC; empty: never expires


@dataclasses.dataclass(frozen=True)
class StatusReport:
    """An agent's health report: the engine's state and how full its data volume is."""

    state: str
    detail: str = ""
    volume_used_bytes: int = 0  # 0 and 0 when the agent could not read them
    volume_total_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class Source:
    """A primary for a replica to follow (see the proto's ReplicationSource)."""

    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False, default="")
    name: str = ""

    def message(self) -> Any:
        return agent_pb2.ReplicationSource(
            host=self.host, port=self.port, user=self.user, password=self.password, name=self.name
        )


@dataclasses.dataclass(frozen=True)
class Replication:
    """One member's replication state, as its agent reports it."""

    role: str
    position: str
    position_value: int
    source_connected: bool
    lag_seconds: float
    lag_bytes: int
    source_host: str
    replicas_connected: int
    writable: bool

    @classmethod
    def of(cls, reply: Any) -> Replication:
        return cls(
            role=str(reply.role),
            position=str(reply.position),
            position_value=int(reply.position_value),
            source_connected=bool(reply.source_connected),
            lag_seconds=float(reply.lag_seconds),
            lag_bytes=int(reply.lag_bytes),
            source_host=str(reply.source_host),
            replicas_connected=int(reply.replicas_connected),
            writable=bool(reply.writable),
        )


class AgentClient(AgentReads):
    """A connection to one instance's agent at ``host:port``: every call the workflows make."""

    def is_serving(self, timeout: float = 1.0) -> bool:
        """True once the agent's gRPC server answers its health check within ``timeout``.

        The call waits for the channel to connect, so a starting agent is seen as soon
        as it listens, not at the next poll.
        """
        try:
            reply = self._call(
                "health check", self._health.Check, health_pb2.HealthCheckRequest(), timeout,
                wait_for_ready=True,
            )  # fmt: skip
        except AgentError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def prepare(
        self,
        databases: Sequence[str],
        users: Sequence[NewUser],
        memory_mb: int,
        timeout: float,
        configuration: dict[str, str] | None = None,
        restored: bool = False,
        restore_time: str = "",
        replica_of: Source | None = None,
    ) -> str:
        request = agent_pb2.PrepareRequest(
            databases=[agent_pb2.Database(name=name) for name in databases],
            users=[_user(u) for u in users],
            memory_mb=memory_mb,
            configuration=configuration or {},
            restored=restored,
            restore_time=restore_time,
        )
        if replica_of is not None:
            request.replica_of.CopyFrom(replica_of.message())
        reply = self._call("Prepare", self._stub.Prepare, request, timeout)
        return str(agent_pb2.ServiceStatus.Name(reply.status))

    def restart(self, timeout: float) -> str:
        reply = self._call("Restart", self._stub.Restart, agent_pb2.RestartRequest(), timeout)
        return str(agent_pb2.ServiceStatus.Name(reply.status))

    def resize(self, memory_mb: int, timeout: float) -> tuple[str, bool]:
        request = agent_pb2.ResizeRequest(memory_mb=memory_mb)
        reply = self._call("Resize", self._stub.Resize, request, timeout)
        return str(agent_pb2.ServiceStatus.Name(reply.status)), bool(reply.restarted)

    def apply_configuration(self, values: dict[str, str], timeout: float) -> bool:
        request = agent_pb2.ApplyConfigurationRequest(values=values)
        reply = self._call("ApplyConfiguration", self._stub.ApplyConfiguration, request, timeout)
        return bool(reply.restart_required)

    def status(self, timeout: float | None = None) -> tuple[str, str]:
        reply = self._call("GetStatus", self._stub.GetStatus, agent_pb2.GetStatusRequest(), timeout)
        return str(agent_pb2.ServiceStatus.Name(reply.status)), str(reply.detail)

    def status_report(self, timeout: float | None = None) -> StatusReport:
        """``status`` with the data volume's usage, for the monitor."""
        reply = self._call("GetStatus", self._stub.GetStatus, agent_pb2.GetStatusRequest(), timeout)
        return StatusReport(
            state=str(agent_pb2.ServiceStatus.Name(reply.status)),
            detail=str(reply.detail),
            volume_used_bytes=int(reply.volume_used_bytes),
            volume_total_bytes=int(reply.volume_total_bytes),
        )

    def get_metrics(self, timeout: float = METRICS_TIMEOUT) -> dict[str, float]:
        """The engine's counters and readings by name (see the proto's GetMetricsResponse)."""
        request = agent_pb2.GetMetricsRequest()
        reply = self._call("GetMetrics", self._stub.GetMetrics, request, timeout)
        return {str(name): float(value) for name, value in reply.values.items()}

    def create_database(self, name: str, character_set: str = "", collate: str = "") -> bool:
        request = agent_pb2.CreateDatabaseRequest(
            database=agent_pb2.Database(name=name, character_set=character_set, collate=collate)
        )
        return bool(self._call("CreateDatabase", self._stub.CreateDatabase, request, None).created)

    def delete_database(self, name: str) -> bool:
        request = agent_pb2.DeleteDatabaseRequest(name=name)
        return bool(self._call("DeleteDatabase", self._stub.DeleteDatabase, request, None).deleted)

    def create_user(self, user: NewUser) -> bool:
        request = agent_pb2.CreateUserRequest(user=_user(user))
        return bool(self._call("CreateUser", self._stub.CreateUser, request, None).created)

    def delete_user(self, name: str, host: str = "") -> bool:
        request = agent_pb2.DeleteUserRequest(name=name, host=host)
        return bool(self._call("DeleteUser", self._stub.DeleteUser, request, None).deleted)

    def count_sessions(self, name: str, host: str = "") -> int:
        """How many client connections the user has open now."""
        request = agent_pb2.CountSessionsRequest(name=name, host=host)
        return int(self._call("CountSessions", self._stub.CountSessions, request, None).sessions)

    def change_password(self, user: NewUser) -> bool:
        request = agent_pb2.ChangePasswordRequest(user=_user(user))
        return bool(self._call("ChangePassword", self._stub.ChangePassword, request, None).changed)

    def grant_access(self, name: str, host: str, databases: Sequence[str]) -> None:
        request = agent_pb2.GrantAccessRequest(name=name, host=host, databases=list(databases))
        self._call("GrantAccess", self._stub.GrantAccess, request, None)

    def revoke_access(self, name: str, host: str, database: str) -> bool:
        request = agent_pb2.RevokeAccessRequest(name=name, host=host, database=database)
        return bool(self._call("RevokeAccess", self._stub.RevokeAccess, request, None).revoked)

    def enable_root(self, password: str) -> str:
        request = agent_pb2.EnableRootRequest(password=password)
        return str(self._call("EnableRoot", self._stub.EnableRoot, request, None).name)

    def disable_root(self) -> bool:
        request = agent_pb2.DisableRootRequest()
        return bool(self._call("DisableRoot", self._stub.DisableRoot, request, None).disabled)

    def backup(
        self, backup_id: str, kind: str, parent_checkpoint: str, timeout: float
    ) -> Iterator[bytes | BackupEnd]:
        """The agent's backup as it streams: bytes, then one ``BackupEnd``."""
        request = agent_pb2.BackupRequest(
            backup_id=backup_id, type=kind, parent_checkpoint=parent_checkpoint
        )
        replies = self._stub.Backup(request, timeout=timeout, metadata=self._metadata())
        try:
            for reply in replies:
                if reply.HasField("done"):
                    yield BackupEnd(checkpoint=reply.done.checkpoint, format=reply.done.format)
                elif reply.data:
                    yield bytes(reply.data)
        except grpc.RpcError as exc:
            raise self._translate("Backup", exc) from exc
        finally:
            replies.cancel()  # a consumer that stops early ends the agent's backup too

    def restore(
        self,
        kind: str,
        position: int,
        form: str,
        chunks: Iterator[bytes],
        timeout: float,
        name: str = "",
    ) -> int:
        """Send one backup of a chain (or one archive file, with its ``name``) to a fresh
        instance's agent; returns the bytes it read."""
        start = agent_pb2.RestoreStart(format=form, type=kind, position=position, name=name)

        def messages() -> Iterator[Any]:
            yield agent_pb2.RestoreChunk(start=start)
            for chunk in chunks:
                yield agent_pb2.RestoreChunk(data=chunk)

        try:
            reply = self._stub.Restore(messages(), timeout=timeout, metadata=self._metadata())
        except grpc.RpcError as exc:
            raise self._translate("Restore", exc) from exc
        return int(reply.bytes)

    def list_archive(self, rotate: bool, timeout: float) -> list[tuple[str, int, float]]:
        """Closed archive files as (name, size, closed_at unix time), oldest first."""
        request = agent_pb2.ListArchiveRequest(rotate=rotate)
        reply = self._call("ListArchive", self._stub.ListArchive, request, timeout)
        return [(f.name, int(f.size), float(f.closed_at)) for f in reply.files]

    def fetch_archive(self, name: str, timeout: float) -> Iterator[bytes]:
        request = agent_pb2.FetchArchiveRequest(name=name)
        return self._bytes("FetchArchive", self._stub.FetchArchive, request, timeout)

    def read_log(self, name: str, offset: int, timeout: float) -> Iterator[bytes]:
        """Log ``name`` from byte ``offset`` to its end as the agent saw it then."""
        request = agent_pb2.ReadLogRequest(name=name, offset=offset)
        return self._bytes("ReadLog", self._stub.ReadLog, request, timeout)

    def _bytes(self, what: str, method: Any, request: Any, timeout: float) -> Iterator[bytes]:
        """The ``data`` of each message of a server stream, its errors as AgentError."""
        replies = method(request, timeout=timeout, metadata=self._metadata())
        try:
            for reply in replies:
                if reply.data:
                    yield bytes(reply.data)
        except grpc.RpcError as exc:
            raise self._translate(what, exc) from exc
        finally:
            replies.cancel()

    def remove_archive(self, names: Sequence[str], timeout: float) -> int:
        request = agent_pb2.RemoveArchiveRequest(names=list(names))
        return int(self._call("RemoveArchive", self._stub.RemoveArchive, request, timeout).removed)

    def check_consistency(self, timeout: float) -> tuple[bool, str]:
        request = agent_pb2.CheckConsistencyRequest()
        reply = self._call("CheckConsistency", self._stub.CheckConsistency, request, timeout)
        return bool(reply.ok), str(reply.detail)

    def enable_replication(
        self, user: str, password: str, replicas: Sequence[str], synchronous: bool, timeout: float
    ) -> None:
        request = agent_pb2.EnableReplicationRequest(
            user=user, password=password, replicas=list(replicas), synchronous=synchronous
        )
        self._call("EnableReplication", self._stub.EnableReplication, request, timeout)

    def replication(self, timeout: float | None = None) -> Replication:
        request = agent_pb2.GetReplicationRequest()
        return Replication.of(
            self._call("GetReplication", self._stub.GetReplication, request, timeout)
        )

    def stop_writes(self, timeout: float) -> Replication:
        request = agent_pb2.StopWritesRequest()
        return Replication.of(self._call("StopWrites", self._stub.StopWrites, request, timeout))

    def promote(self, wait_for_position: int, wait: float, timeout: float) -> Replication:
        request = agent_pb2.PromoteRequest(wait_for_position=wait_for_position, timeout=wait)
        return Replication.of(self._call("Promote", self._stub.Promote, request, timeout))

    def follow(self, source: Source, timeout: float) -> None:
        request = agent_pb2.FollowRequest(source=source.message())
        self._call("Follow", self._stub.Follow, request, timeout)


def _user(user: NewUser) -> Any:
    return agent_pb2.User(
        name=user.name,
        password=user.password,
        host=user.host,
        databases=list(user.databases),
        access=user.access,
        valid_until=user.valid_until,
    )
