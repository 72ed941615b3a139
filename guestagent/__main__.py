"""Command line of the guest agent, the entry point of every instance container.

python -m guestagent --engine postgresql [--port 50051] [--data-dir /var/lib/cellar/data]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cellar import logs
from cellar.catalog import AGENT_PORT
from guestagent.engines import ENGINES, engine_class

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m guestagent", description=__doc__)
    parser.add_argument("--engine", required=True, choices=sorted(ENGINES))
    parser.add_argument("--port", type=int, default=AGENT_PORT)
    parser.add_argument("--host", default="[::]", help="address to listen on (default: all)")
    parser.add_argument("--data-dir", type=Path, default=Path("/var/lib/cellar/data"))
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("guestagent", getattr(logging, args.log_level))
    engine = engine_class(args.engine)(args.data_dir)
    engine.warm_up()
    from guestagent.server import run  # gRPC is loaded after the early work has started

    try:
        return run(engine, host=args.host, port=args.port)
    except RuntimeError:
        logger.exception("the guest agent could not serve on %s:%d", args.host, args.port)
        return 1


if __name__ == "__main__":
    sys.exit(main())
