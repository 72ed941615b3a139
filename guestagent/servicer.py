"""The GuestAgent gRPC service: proto messages in, engine calls, proto messages out.

Nothing here knows an engine's internals or handles errors; the interceptor does that.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from cellar.errors import InvalidInput
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from cellar.pipeline import read_ahead
from guestagent.engines.base import Engine
from guestagent.engines.messages import (
    BackupDone,
    BackupRequest,
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    EnableReplicationRequest,
    GrantAccessRequest,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
    RevokeAccessRequest,
    ServiceStatus,
    User,
)
from guestagent.logfile import LogFile

DEFAULT_LINES = 100
BACKUP_READ_AHEAD = 4  # chunks read from the tool and not yet sent
MAX_LINES = 5000


def _status(status: ServiceStatus) -> Any:
    return agent_pb2.ServiceStatus.Value(status.value)


def _database(message: Any) -> Database:
    return Database(name=message.name, character_set=message.character_set, collate=message.collate)


def _user(message: Any) -> User:
    return User(
        name=message.name,
        password=message.password,
        host=message.host,
        databases=tuple(message.databases),
        access=message.access,
        valid_until=message.valid_until,
    )


def _source(message: Any) -> ReplicationSource:
    return ReplicationSource(
        host=message.host,
        port=int(message.port),
        user=message.user,
        password=message.password,
        name=message.name,
    )


def _replication(state: ReplicationState) -> Any:
    return agent_pb2.ReplicationState(
        role=state.role,
        position=state.position,
        position_value=state.position_value,
        source_connected=state.source_connected,
        lag_seconds=state.lag_seconds,
        lag_bytes=state.lag_bytes,
        source_host=state.source_host,
        replicas_connected=state.replicas_connected,
        writable=state.writable,
    )


class GuestAgentServicer(agent_pb2_grpc.GuestAgentServicer):
    """Serves the v1 contract with one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def Prepare(self, request: Any, context: Any) -> Any:
        status = self.engine.prepare(
            PrepareRequest(
                databases=tuple(_database(d) for d in request.databases),
                users=tuple(_user(u) for u in request.users),
                memory_mb=request.memory_mb,
                configuration=tuple(sorted(request.configuration.items())),
                restored=request.restored,
                restore_time=request.restore_time,
                replica_of=_source(request.replica_of) if request.HasField("replica_of") else None,
            )
        )
        return agent_pb2.PrepareResponse(status=_status(status))

    def GetStatus(self, request: Any, context: Any) -> Any:
        report = self.engine.status()
        usage = self.engine.volume_usage()
        return agent_pb2.GetStatusResponse(
            status=_status(report.status),
            detail=report.detail,
            engine=self.engine.name,
            version=self.engine.version,
            volume_used_bytes=usage.used_bytes,
            volume_total_bytes=usage.total_bytes,
        )

    def CreateDatabase(self, request: Any, context: Any) -> Any:
        created = self.engine.create_database(_database(request.database))
        return agent_pb2.CreateDatabaseResponse(created=created)

    def ListDatabases(self, request: Any, context: Any) -> Any:
        databases = [
            agent_pb2.Database(name=d.name, character_set=d.character_set, collate=d.collate)
            for d in self.engine.list_databases()
        ]
        return agent_pb2.ListDatabasesResponse(databases=databases)

    def DeleteDatabase(self, request: Any, context: Any) -> Any:
        deleted = self.engine.delete_database(DeleteDatabaseRequest(name=request.name))
        return agent_pb2.DeleteDatabaseResponse(deleted=deleted)

    def CreateUser(self, request: Any, context: Any) -> Any:
        created = self.engine.create_user(_user(request.user))
        return agent_pb2.CreateUserResponse(created=created)

    def ListUsers(self, request: Any, context: Any) -> Any:
        users = [
            agent_pb2.User(name=u.name, host=u.host, databases=list(u.databases))
            for u in self.engine.list_users()
        ]
        return agent_pb2.ListUsersResponse(users=users)

    def DeleteUser(self, request: Any, context: Any) -> Any:
        deleted = self.engine.delete_user(DeleteUserRequest(name=request.name, host=request.host))
        return agent_pb2.DeleteUserResponse(deleted=deleted)

    def CountSessions(self, request: Any, context: Any) -> Any:
        sessions = self.engine.count_sessions(
            CountSessionsRequest(name=request.name, host=request.host)
        )
        return agent_pb2.CountSessionsResponse(sessions=sessions)

    def ChangePassword(self, request: Any, context: Any) -> Any:
        changed = self.engine.change_password(_user(request.user))
        return agent_pb2.ChangePasswordResponse(changed=changed)

    def GrantAccess(self, request: Any, context: Any) -> Any:
        self.engine.grant_access(
            GrantAccessRequest(
                name=request.name, host=request.host, databases=tuple(request.databases)
            )
        )
        return agent_pb2.GrantAccessResponse()

    def RevokeAccess(self, request: Any, context: Any) -> Any:
        revoked = self.engine.revoke_access(
            RevokeAccessRequest(name=request.name, host=request.host, database=request.database)
        )
        return agent_pb2.RevokeAccessResponse(revoked=revoked)

    def EnableRoot(self, request: Any, context: Any) -> Any:
        return agent_pb2.EnableRootResponse(name=self.engine.enable_root(request.password))

    def GetConfiguration(self, request: Any, context: Any) -> Any:
        values = self.engine.get_configuration(list(request.names))
        return agent_pb2.GetConfigurationResponse(values=values)

    def DisableRoot(self, request: Any, context: Any) -> Any:
        return agent_pb2.DisableRootResponse(disabled=self.engine.disable_root())

    def Restart(self, request: Any, context: Any) -> Any:
        return agent_pb2.RestartResponse(status=_status(self.engine.restart()))

    def Resize(self, request: Any, context: Any) -> Any:
        restarted = self.engine.resize(int(request.memory_mb))
        status = self.engine.status().status
        return agent_pb2.ResizeResponse(status=_status(status), restarted=restarted)

    def ListLogs(self, request: Any, context: Any) -> Any:
        logs = [
            agent_pb2.LogInfo(name=name, size=log.size())
            for name, log in sorted(self.engine.logs().items())
        ]
        return agent_pb2.ListLogsResponse(logs=logs)

    def TailLog(self, request: Any, context: Any) -> Any:
        log = self._log(request.name)
        lines = max(1, min(int(request.lines or DEFAULT_LINES), MAX_LINES))
        return agent_pb2.TailLogResponse(lines=log.tail(lines))

    def ReadLog(self, request: Any, context: Any) -> Iterator[Any]:
        for chunk in self._log(request.name).read_from(max(0, int(request.offset))):
            yield agent_pb2.ReadLogChunk(data=chunk)

    def _log(self, name: str) -> LogFile:
        logs = self.engine.logs()
        log = logs.get(name)
        if log is None:
            known = ", ".join(sorted(logs)) or "none"
            raise InvalidInput(f"no log named {name!r}; logs: {known}")
        return log

    def ApplyConfiguration(self, request: Any, context: Any) -> Any:
        restart = self.engine.apply_configuration(dict(request.values))
        return agent_pb2.ApplyConfigurationResponse(restart_required=restart)

    def Backup(self, request: Any, context: Any) -> Iterator[Any]:
        # the next chunk is read from the engine's tool while gRPC sends this one
        yield from read_ahead(self._backup_messages(request), BACKUP_READ_AHEAD)

    def _backup_messages(self, request: Any) -> Iterator[Any]:
        pieces = self.engine.backup(
            BackupRequest(
                backup_id=request.backup_id,
                type=request.type or "full",
                parent_checkpoint=request.parent_checkpoint,
            )
        )
        for piece in pieces:
            if isinstance(piece, BackupDone):
                done = agent_pb2.BackupDone(checkpoint=piece.checkpoint, format=piece.format)
                yield agent_pb2.BackupChunk(done=done)
            elif piece:
                yield agent_pb2.BackupChunk(data=piece)

    def Restore(self, request_iterator: Any, context: Any) -> Any:
        first = next(request_iterator, None)
        if first is None or not first.HasField("start"):
            raise InvalidInput("a restore stream must begin with its RestoreStart message")
        start = RestoreStart(
            format=first.start.format,
            type=first.start.type or "full",
            position=int(first.start.position),
            name=first.start.name,
        )
        head = [first.data] if first.data else []
        chunks = itertools.chain(head, (message.data for message in request_iterator))
        return agent_pb2.RestoreResponse(bytes=self.engine.restore(start, chunks))

    def CheckConsistency(self, request: Any, context: Any) -> Any:
        report = self.engine.check_consistency()
        return agent_pb2.CheckConsistencyResponse(ok=report.ok, detail=report.detail)

    def GetMetrics(self, request: Any, context: Any) -> Any:
        return agent_pb2.GetMetricsResponse(values=self.engine.metrics())

    def ListArchive(self, request: Any, context: Any) -> Any:
        files = [
            agent_pb2.ArchiveFile(name=f.name, size=f.size, closed_at=f.closed_at)
            for f in self.engine.list_archive(bool(request.rotate))
        ]
        return agent_pb2.ListArchiveResponse(files=files)

    def FetchArchive(self, request: Any, context: Any) -> Iterator[Any]:
        for chunk in self.engine.fetch_archive(request.name):
            if chunk:
                yield agent_pb2.BackupChunk(data=chunk)

    def RemoveArchive(self, request: Any, context: Any) -> Any:
        removed = self.engine.remove_archive(tuple(request.names))
        return agent_pb2.RemoveArchiveResponse(removed=removed)

    def EnableReplication(self, request: Any, context: Any) -> Any:
        self.engine.enable_replication(
            EnableReplicationRequest(
                user=request.user,
                password=request.password,
                replicas=tuple(request.replicas),
                synchronous=request.synchronous,
            )
        )
        return agent_pb2.EnableReplicationResponse()

    def GetReplication(self, request: Any, context: Any) -> Any:
        return _replication(self.engine.replication_state())

    def StopWrites(self, request: Any, context: Any) -> Any:
        return _replication(self.engine.stop_writes())

    def Promote(self, request: Any, context: Any) -> Any:
        timeout = float(request.timeout) if request.timeout > 0 else 30.0
        return _replication(self.engine.promote(int(request.wait_for_position), timeout))

    def Follow(self, request: Any, context: Any) -> Any:
        if not request.HasField("source") or not request.source.host:
            raise InvalidInput("Follow needs a source with a host")
        self.engine.follow(_source(request.source))
        return agent_pb2.FollowResponse()
