"""``cellar task ...``: Cellar's record of each change to an instance, step by step."""

from __future__ import annotations

import argparse
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit

COLUMNS = ("id", "workflow", "state", "step", "created", "duration")


def add_parser(sub: Any) -> None:
    task = sub.add_parser("task", help="the changes Cellar made or is making to an instance")
    actions = task.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="an instance's tasks, newest first").add_argument("instance")
    actions.add_parser("show", help="one task: its step, its error, how long it took").add_argument(
        "id", metavar="task-id"
    )


def run(args: argparse.Namespace, client: Client) -> int:
    if args.action == "list":
        emit(client.call("GET", f"/instances/{args.instance}/tasks")["tasks"], args.format, COLUMNS)
    else:
        emit(client.call("GET", f"/tasks/{args.id}")["task"], args.format)
    return 0
