"""The reads the API makes live from a guest agent: its databases, users and logs.

:class:`AgentReads` is the narrow client the API holds; the task manager's full client
(``taskmanager.agent_client.AgentClient``) builds on it. Every call has a deadline and
carries the current request id as ``x-request-id`` metadata; ``grpc.RpcError`` is
translated here into ``AgentError`` (or ``AgentTimeout``), with ``raise ... from exc``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from cellar import agent_tls, logs
from cellar.errors import AgentError, AgentTimeout
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from cellar.models import Instance

logger = logging.getLogger(__name__)

T = TypeVar("T")

# An agent that is still starting refuses connections (where Docker runs its userland port
# proxy, the proxy accepts, then drops them); retry every 20-100 ms rather than backing
# off for seconds, so a new instance is seen as soon as it serves. A stream's receive
# window stays at 4 MiB: left to grow with gRPC's bandwidth probe, it let a backup hold
# tens of MB more in the worker while the disk was slower than the network, for no
# faster stream.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 100),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 4 * 1024 * 1024),
)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class AgentReads:
    """A mutual-TLS connection to the agent of ``instance_id`` at ``host:port``, for
    live reads: ``credentials`` are the control plane's, and the agent must prove that
    it is that instance's (``cellar.agent_tls``)."""

    def __init__(
        self,
        host: str,
        port: int,
        instance_id: str,
        credentials: grpc.ChannelCredentials,
        timeout: float = 30.0,
    ) -> None:
        self.address = f"{host}:{port}"
        self.instance_id = instance_id
        self.timeout = timeout
        options = CHANNEL_OPTIONS + agent_tls.for_instance(instance_id)
        self._channel = grpc.secure_channel(self.address, credentials, options=options)
        self._stub = agent_pb2_grpc.GuestAgentStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(
        self,
        name: str,
        fn: Callable[..., T],
        request: Any,
        timeout: float | None,
        wait_for_ready: bool = False,
    ) -> T:
        try:
            return fn(
                request,
                timeout=timeout or self.timeout,
                metadata=self._metadata(),
                wait_for_ready=wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise self._translate(name, exc) from exc

    @staticmethod
    def _metadata() -> tuple[tuple[str, str], ...]:
        return (("x-request-id", logs.request_id.get()),)

    def _translate(self, name: str, exc: grpc.RpcError) -> AgentError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return AgentTimeout(f"agent at {self.address} did not answer {name} in time")
        return AgentError(
            f"agent {name} failed: {detail or code.name}", retryable=code in RETRYABLE
        )

    def list_logs(self) -> list[dict[str, Any]]:
        reply = self._call("ListLogs", self._stub.ListLogs, agent_pb2.ListLogsRequest(), None)
        return [{"name": log.name, "size": int(log.size)} for log in reply.logs]

    def tail_log(self, name: str, lines: int) -> list[str]:
        request = agent_pb2.TailLogRequest(name=name, lines=lines)
        return list(self._call("TailLog", self._stub.TailLog, request, None).lines)

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        request = agent_pb2.GetConfigurationRequest(names=names)
        reply = self._call("GetConfiguration", self._stub.GetConfiguration, request, None)
        return dict(reply.values)

    def list_databases(self) -> list[dict[str, str]]:
        reply = self._call(
            "ListDatabases", self._stub.ListDatabases, agent_pb2.ListDatabasesRequest(), None
        )
        return [
            {"name": d.name, "character_set": d.character_set, "collate": d.collate}
            for d in reply.databases
        ]

    def list_users(self) -> list[dict[str, Any]]:
        reply = self._call("ListUsers", self._stub.ListUsers, agent_pb2.ListUsersRequest(), None)
        return [
            {"name": u.name, "host": u.host or "%", "databases": list(u.databases)}
            for u in reply.users
        ]


C = TypeVar("C", bound=AgentReads)


class Pool(Generic[C]):
    """One channel per instance's agent, reused across calls; made again for a new
    port, or once the control plane's certificate has been renewed."""

    def __init__(self, make: type[C], tls: Credentials, timeout: float) -> None:
        self.make, self.tls, self.timeout = make, tls, timeout
        self._clients: dict[str, tuple[int, bytes, C]] = {}
        self._lock = threading.Lock()

    def __call__(self, instance: Instance) -> C:
        if instance.agent_port is None:
            raise LookupError(f"instance {instance.id} has no agent port yet")
        issued, credentials = self.tls.current()
        with self._lock:
            kept = self._clients.get(instance.id)
            if kept is not None and kept[:2] == (instance.agent_port, issued.certificate):
                return kept[2]
            client = self.make(
                "127.0.0.1", instance.agent_port, instance.id, credentials, self.timeout
            )
            self._clients[instance.id] = (instance.agent_port, issued.certificate, client)
        if kept is not None:
            kept[2].close()
        return client


class Credentials(Protocol):
    """The control plane's certificate now (``cellar.pki.ClientTls``)."""

    def current(self) -> tuple[Any, grpc.ChannelCredentials]: ...


class ReadPool(Pool[AgentReads]):
    def __init__(self, tls: Credentials, timeout: float) -> None:
        super().__init__(AgentReads, tls, timeout)
