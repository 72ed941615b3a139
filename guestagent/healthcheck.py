"""The image's HEALTHCHECK: exit 0 if the local agent reports a HEALTHY engine, else 1.

python -m guestagent.healthcheck [--port 50051]
"""

from __future__ import annotations

import argparse
import sys

import grpc

from cellar.catalog import AGENT_PORT
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc

TIMEOUT = 2.0


def check(address: str, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Ask the agent at ``address`` for its status; (healthy?, a line to print)."""
    with grpc.insecure_channel(address) as channel:
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
    args = parser.parse_args(argv)
    healthy, line = check(f"{args.host}:{args.port}", args.timeout)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
