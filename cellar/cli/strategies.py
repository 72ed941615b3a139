"""``cellar strategy ...``: an instance's scheduled backups and how many of them are kept.

The schedule is checked as the arguments are read, with the API's own cron parser
(:mod:`cellar.cron`), so a schedule the API would refuse is refused before the CLI
logs in or sends anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cellar import cron
from cellar.cli.client import Client
from cellar.cli.output import emit
from cellar.errors import InvalidInput

COLUMNS = ("instance_id", "schedule", "keep_count", "keep_days", "verify", "incremental",
           "next_run_at", "last_backup_id")  # fmt: skip


def next_run(schedule: str, now: dt.datetime | None = None) -> dt.datetime:
    """When ``schedule`` (five cron fields, UTC) first fires after ``now``; InvalidInput
    saying which field is wrong if the API would refuse it."""
    after = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return cron.next_after(cron.parse(schedule), after)


def schedule_arg(text: str) -> str:
    """``--schedule``: refused by argparse, naming the wrong field, unless it fires."""
    try:
        next_run(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_parser(sub: Any) -> None:
    strategy = sub.add_parser("strategy", help="scheduled backups of an instance")
    actions = strategy.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="back the instance up on a schedule (replaces its strategy, if any)"
    )
    create.add_argument("instance")
    create.add_argument(
        "--schedule", metavar="CRON", type=schedule_arg,
        help='five cron fields in UTC, e.g. "0 3 * * mon", or @daily, @weekly... '
             "(the default: every day at 03:00)",
    )  # fmt: skip
    create.add_argument("--keep-count", type=int, metavar="N", help="keep the newest N backups")
    create.add_argument("--keep-days", type=int, metavar="N", help="keep backups N days")
    create.add_argument("--verify", action="store_true", help="verify each backup by a restore")
    create.add_argument(
        "--incremental", action="store_true", help="build each backup on the last (MariaDB)"
    )
    actions.add_parser("list", help="the project's strategies and their next runs").add_argument(
        "--instance", help="only this instance's"
    )
    actions.add_parser("delete", help="stop the instance's scheduled backups").add_argument(
        "instance"
    )


def run(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        body: dict[str, Any] = {"instance_id": args.instance}
        if args.schedule is not None:
            body["schedule"] = args.schedule
        for name in ("keep_count", "keep_days"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        for name in ("verify", "incremental"):
            if getattr(args, name):
                body[name] = True
        made = client.call("POST", "/backup_strategies", {"backup_strategy": body})
        emit(made["backup_strategy"], args.format)
    elif args.action == "list":
        query = f"?instance_id={args.instance}" if args.instance else ""
        found = client.call("GET", f"/backup_strategies{query}")["backup_strategies"]
        emit(found, args.format, COLUMNS)
    elif args.action == "delete":
        client.call("DELETE", f"/backup_strategies?instance_id={args.instance}")
        print(f"no more scheduled backups of instance {args.instance}", file=sys.stderr)
    return 0
