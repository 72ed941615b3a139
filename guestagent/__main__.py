"""Command line of the guest agent, the entry point of every instance container.

python -m guestagent --engine postgresql [--port 50051] [--data-dir /var/lib/cellar/data]
                      [--tls-dir /etc/cellar/tls]

The TLS folder holds the agent's certificate and key and Cellar's CA (``agent.crt``,
``agent.key``, ``ca.crt``), which the worker puts there; without them the agent does not
serve.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import threading
from pathlib import Path

from cellar import logs
from cellar.catalog import AGENT_PORT
from guestagent.engines import ENGINES, engine_class
from guestagent.engines.tls_files import watch

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m guestagent", description=__doc__)
    parser.add_argument("--engine", required=True, choices=sorted(ENGINES))
    parser.add_argument("--port", type=int, default=AGENT_PORT)
    parser.add_argument("--host", default="[::]", help="address to listen on (default: all)")
    parser.add_argument("--data-dir", type=Path, default=Path("/var/lib/cellar/data"))
    parser.add_argument("--tls-dir", type=Path, default=Path("/etc/cellar/tls"))
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser.parse_args(argv)


M_ARENA_MAX = -8  # glibc's mallopt parameter: the most malloc arenas threads may share
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Make the agent's threads share ``arenas`` malloc arenas; True if glibc took it.

    Call before any thread starts. A backup streams through the agent in 1 MiB pieces
    on gRPC's threads; with an arena per thread, freed pieces go back to the kernel and
    every new one costs fresh pages. Shared arenas reuse them, which halves the CPU a
    backup takes here. Only this process: the engine it starts keeps glibc's default.
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no C library symbols here, or not glibc
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    logs.setup("guestagent", getattr(logging, args.log_level))
    engine = engine_class(args.engine)(args.data_dir)
    engine.use_tls(args.tls_dir)
    try:
        engine.refresh_tls()  # before the engine starts: its configuration names the files
    except OSError as exc:
        logger.error("the engine's TLS files cannot be put in place: %s", exc)
        return 1
    engine.warm_up()
    from cellar.agent_tls import ServerFiles  # gRPC is loaded after the early work started
    from guestagent.server import run

    try:
        tls = ServerFiles(args.tls_dir, os.environ.get("CELLAR_INSTANCE_ID", ""))
    except OSError as exc:
        logger.error("the guest agent has no certificate in %s: %s", args.tls_dir, exc)
        return 1
    watch(engine.refresh_tls, threading.Event())
    try:
        return run(engine, tls, host=args.host, port=args.port)
    except RuntimeError:
        logger.exception("the guest agent could not serve on %s:%d", args.host, args.port)
        return 1


if __name__ == "__main__":
    sys.exit(main())
