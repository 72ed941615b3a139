"""The guest agent's gRPC server and its life cycle.

The agent serves mutual TLS only (``cellar.agent_tls``): its certificate names its
instance, and it answers only callers whose certificate comes from Cellar's CA, the
control plane for everything, other agents for health checks alone.

Use :class:`AgentServer` to run an agent in code (tests bind port 0 and read the port
that ``start`` returns); use :func:`run` for the process, which also stops everything
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cellar.agent_tls import ServerFiles, caller_may
from cellar.catalog import AGENT_PORT
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from guestagent.engines.base import Engine
from guestagent.engines.messages import ServiceStatus
from guestagent.interceptor import CallInterceptor
from guestagent.servicer import GuestAgentServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["GuestAgent"].full_name


class AgentServer:
    """One engine served over gRPC with the standard health service."""

    def __init__(
        self,
        engine: Engine,
        tls: ServerFiles,
        host: str = "[::]",
        port: int = AGENT_PORT,
        max_workers: int = 16,
    ) -> None:
        self.engine = engine
        self.tls = tls
        self.address = f"{host}:{port}"
        self.port = port
        self.health = health.HealthServicer()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
            interceptors=[CallInterceptor(authorize=self._may)],
        )
        agent_pb2_grpc.add_GuestAgentServicer_to_server(GuestAgentServicer(engine), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._resume: threading.Thread | None = None

    def _may(self, context: Any, service: str, method: str) -> bool:
        return caller_may(context, service, method, self.tls.instance_id)

    def start(self, resume_engine: bool = True) -> int:
        """Bind and serve (TLS only, to callers with a certificate from Cellar's CA); start
        a prepared engine in the background. Returns the port."""
        self.port = self._server.add_secure_port(self.address, self.tls.credentials())
        self._server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        self.health.set("", serving)
        self.health.set(SERVICE_NAME, serving)
        logger.info(
            "guest agent for %s %s serving on port %d",
            self.engine.name,
            self.engine.version,
            self.port,
        )
        if resume_engine:
            self._resume = threading.Thread(
                target=resume, args=(self.engine,), name="resume-engine", daemon=True
            )
            self._resume.start()
        return self.port

    def stop(self, grace: float = 5.0) -> None:
        """Stop the engine (fast shutdown), then the server."""
        self.health.enter_graceful_shutdown()
        try:
            self.engine.stop()
        except Exception:
            logger.exception("the engine did not stop cleanly")
        self._server.stop(grace).wait()
        logger.info("guest agent stopped")

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))


def resume(engine: Engine) -> None:
    """Start the engine of an instance that was prepared before this agent started."""
    if engine.status().status is not ServiceStatus.SHUTDOWN:
        return
    logger.info("the instance was prepared before: starting %s", engine.name)
    try:
        engine.start()
    except Exception:
        logger.exception("could not start %s", engine.name)


def run(engine: Engine, tls: ServerFiles, host: str = "[::]", port: int = AGENT_PORT) -> int:
    """Serve until SIGTERM or SIGINT, then stop the engine and the server; returns 0."""
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = AgentServer(engine, tls, host=host, port=port)
        server.start()
        stop_requested.wait()
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
