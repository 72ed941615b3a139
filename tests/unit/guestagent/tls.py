"""Certificates for agents served in tests: a CA in a temporary home, an agent's folder,
and channels that present the control plane's certificate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc

from cellar import agent_tls, pki
from cellar.agent_reads import CHANNEL_OPTIONS

INSTANCE = "inst-tls"


@dataclasses.dataclass
class Tls:
    authority: pki.Authority
    folder: Path  # the agent's certificate, for INSTANCE
    client: pki.ClientTls

    def server(self) -> agent_tls.ServerFiles:
        return agent_tls.ServerFiles(self.folder, INSTANCE)

    def channel(self, port: int, instance: str = INSTANCE) -> grpc.Channel:
        """A control-plane channel to the agent of ``instance`` at ``port``."""
        _issued, credentials = self.client.current()
        options = CHANNEL_OPTIONS + agent_tls.for_instance(instance)
        return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


def make_tls(root: Path, instance: str = INSTANCE) -> Tls:
    authority = pki.Authority.from_home(root / "home")
    folder = root / "agent-tls"
    pki.write_agent_files(folder, authority.agent(instance), authority.pem)
    return Tls(authority, folder, pki.ClientTls(authority))
