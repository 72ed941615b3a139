"""``python -m tests.chaos``: kill the worker before and during every step of every
workflow and check that each one converges (``make chaos``); ``--slice`` runs one kill
per workflow (what ``make test`` runs). Prints a table; exits 1 if any cell fails.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.harness import ChaosStack
from tests.chaos.run import header, matrix, off_path, run
from tests.chaos.world import World
from tests.integration.identity import Identity
from tests.integration.keystone import KeystoneServer
from tests.integration.services import PostgresServer, RabbitServer
from tests.integration.stack import remove_leftovers


def production_services(servers: contextlib.ExitStack) -> tuple[dict[str, str], Identity]:
    """A private PostgreSQL, RabbitMQ and Keystone for the stack, stopped when
    ``servers`` closes; their settings, and the Keystone admin's access."""
    shared = Path(tempfile.mkdtemp(prefix="cellar-chaos-services-"))
    shared.chmod(0o755)  # the servers run as their own users
    servers.callback(shutil.rmtree, shared, True)
    postgres, rabbit = PostgresServer(shared / "pg"), RabbitServer(shared / "rabbit")
    keystone = KeystoneServer(shared / "keystone")
    for server in (postgres, rabbit, keystone):
        server.start()
        servers.callback(server.stop)
    env = {"CELLAR_DATABASE_URL": postgres.url, "CELLAR_BROKER_URL": rabbit.url}
    return {**env, **keystone.cellar_env()}, keystone.admin()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--slice", action="store_true", help="one kill per workflow")
    parser.add_argument("--only", default="", help="only the scenarios whose name has this")
    parser.add_argument("--list", action="store_true", help="list the cells and stop")
    parser.add_argument("--home", type=Path, help="CELLAR_HOME of the stack (a new temp dir)")
    parser.add_argument(
        "--profile",
        choices=("embedded", "production"),
        default="embedded",
        help="production: the metadata in a real PostgreSQL, the broker a real RabbitMQ, "
        "tokens from a real Keystone",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cells = list(matrix(full=not args.slice, only=args.only))
    if args.list:
        for cell in cells:
            print(cell.name)
        return 0
    home = args.home or Path(tempfile.mkdtemp(prefix="cellar-chaos-"))
    print(f"{len(cells)} cells, {args.profile} profile; stack in {home}", flush=True)
    started = time.monotonic()
    with contextlib.ExitStack() as servers:
        extra: dict[str, str] = {}
        identity = None
        if args.profile == "production":
            extra, identity = production_services(servers)
        chaos = ChaosStack(home / "home" if args.home is None else home, extra, identity)
        world = World(chaos)
        try:
            print(header(), flush=True)
            results = run(world, cells)
        finally:
            try:
                world.cleanup()
            finally:
                chaos.stop()
                remove_leftovers(world.api.project)
    failed = [r for r in results if not r.passed]
    for scenario, step, why in off_path(args.only):
        print(f"not killed: {scenario} / {step}: {why}")
    print(
        f"{len(results) - len(failed)} of {len(results)} cells converged "
        f"in {time.monotonic() - started:.0f} s; worker killed {chaos.deaths} times"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
