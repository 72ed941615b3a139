"""The image's HEALTHCHECK: exit 0 if the local agent reports a HEALTHY engine, else 1.

python -m guestagent.healthcheck [--port 50051]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc

from cellar import agent_tls
from cellar.catalog import AGENT_PORT
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc

TIMEOUT = 2.0


def check(address: str, tls_dir: Path, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Ask the agent at ``address`` for its status, over TLS with the agent's own
    certificate; (healthy?, a line to print)."""
    try:
        ca, key, cert = (tls_dir / n for n in (agent_tls.CA, agent_tls.KEY, agent_tls.CERT))
        credentials = grpc.ssl_channel_credentials(
            ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
    except OSError as exc:
        return False, f"no certificate to call the agent with: {exc}"
    instance = os.environ.get("CELLAR_INSTANCE_ID", "")
    options = agent_tls.for_instance(instance)
    with grpc.secure_channel(address, credentials, options=options) as channel:
        stub = agent_pb2_grpc.GuestAgentStub(channel)
        try:
            reply = stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"agent unreachable: {exc.code().name}"
    name = agent_pb2.ServiceStatus.Name(reply.status)
    line = f"{name}: {reply.detail}" if reply.detail else name
    return reply.status == agent_pb2.HEALTHY, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guestagent.healthcheck")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=AGENT_PORT)
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    parser.add_argument("--tls-dir", type=Path, default=Path("/etc/cellar/tls"))
    args = parser.parse_args(argv)
    healthy, line = check(f"{args.host}:{args.port}", args.tls_dir, args.timeout)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
