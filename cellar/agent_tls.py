"""Mutual TLS between the control plane and the guest agents.

An agent serves only TLS and asks every caller for a certificate from Cellar's CA
(:func:`server_credentials`); it reads its own certificate from files that the worker
renews, and takes a new one at the next connection without a restart. Which caller
may do what is :func:`caller_may`: the control plane anything, the agent's own
certificate (the image's health check uses it) the health checks alone, any other
certificate nothing.

The control plane connects with ``cellar.pki.ClientTls``: its own certificate, the CA to
trust and, per channel, the name the agent's certificate must hold
(``<instance id>.agent.cellar``), so a process that takes over a stopped agent's port
cannot pass for it. This module needs gRPC alone (the agent's image has no
``cryptography``); ``cellar.pki`` issues the certificates.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import grpc

logger = logging.getLogger(__name__)

CERT, KEY, CA = "agent.crt", "agent.key", "ca.crt"  # the files of an agent's folder
HEALTH_SERVICE = "grpc.health.v1.Health"
AGENT_MAY = ("GetStatus",)  # what an agent's certificate may call besides health checks
CONTROL_PLANE = "cellar control plane"  # the common name of the control plane's certificate
AGENT = "cellar agent "  # an agent's common name: this, then its instance's id


def agent_name(instance_id: str) -> str:
    """The DNS name an agent's certificate holds, which the control plane checks."""
    return f"{instance_id}.agent.cellar"


class ServerFiles:
    """The certificate of ``instance_id``'s agent as its folder holds it now (read again
    when it changes)."""

    def __init__(self, folder: Path, instance_id: str) -> None:
        self.folder = folder
        self.instance_id = instance_id
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self.ca = (folder / CA).read_bytes()
        self._config = self._read()

    def _stamp(self) -> tuple[int, int]:
        cert, key = os.stat(self.folder / CERT), os.stat(self.folder / KEY)
        return (cert.st_mtime_ns ^ cert.st_ino, key.st_mtime_ns ^ key.st_ino)

    def _read(self) -> Any:
        self._seen = self._stamp()
        key, cert = (self.folder / KEY).read_bytes(), (self.folder / CERT).read_bytes()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=self.ca)

    def fetch(self) -> Any:
        """gRPC asks before each handshake: a new configuration, or None for the same."""
        with self._lock:
            try:
                if self._stamp() == self._seen:
                    return None
                self._config = self._read()
            except OSError:
                logger.exception("could not read the renewed certificate in %s", self.folder)
                return None
            logger.info("serving with the renewed certificate in %s", self.folder)
            return self._config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._config, self.fetch, require_client_authentication=True
        )


def caller_may(context: Any, service: str, method: str, instance_id: str) -> bool:
    """True if the caller's certificate lets it call ``method`` of ``service`` on the
    agent of ``instance_id``: the control plane's anything, that agent's own (the
    image's health check) the health service and ``GetStatus`` alone, any other none."""
    auth = context.auth_context() or {}
    names = [n.decode(errors="replace") for n in auth.get("x509_common_name", ())]
    if CONTROL_PLANE in names:
        return True
    reads_health = service == HEALTH_SERVICE or method in AGENT_MAY
    return reads_health and AGENT + instance_id in names


def for_instance(instance_id: str) -> tuple[tuple[str, Any], ...]:
    """The channel option that makes the agent prove it is ``instance_id``'s."""
    return (("grpc.ssl_target_name_override", agent_name(instance_id)),)
