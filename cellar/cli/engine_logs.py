"""``cellar log ...``: an instance's engine logs, read live or published to backup storage."""

from __future__ import annotations

import argparse
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit

COLUMNS = ("name", "type", "status", "size", "published", "pending")


def add_parser(sub: Any) -> None:
    log = sub.add_parser("log", help="the engine's logs of an instance")
    actions = log.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the instance's logs and how much is published").add_argument(
        "instance"
    )
    for name, text in (
        ("show", "one log's sizes and where it is published"),
        ("publish", "store what the log gained since the last publish in backup storage"),
        ("discard", "remove what was published"),
    ):
        command = actions.add_parser(name, help=text)
        command.add_argument("instance")
        command.add_argument("name", help="the log, as 'cellar log list' names it")
    tail = actions.add_parser("tail", help="the log's last lines, read from the engine now")
    tail.add_argument("instance")
    tail.add_argument("name")
    tail.add_argument("--lines", type=int, default=100, help="1 to 5000 (default 100)")


def run(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance}/log"
    if args.action == "list":
        emit(client.call("GET", path)["logs"], args.format, COLUMNS)
    elif args.action == "tail":
        lines = client.call("GET", f"{path}/{args.name}?lines={args.lines}")["log"]["lines"]
        if args.format == "json":
            emit({"name": args.name, "lines": lines}, args.format)
        else:
            print("\n".join(lines))
    else:
        body: dict[str, Any] = {"name": args.name}
        if args.action != "show":
            body[args.action] = 1
        emit(client.call("POST", path, body)["log"], args.format)
    return 0
