"""``cellar replica ...``: replica sets from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit

EVENT_COLUMNS = ("kind", "state", "old_primary", "new_primary", "started", "seconds")


def add_parser(sub: Any) -> None:
    replica = sub.add_parser("replica", help="replicas, switchover and failover")
    actions = replica.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="new replicas of an instance")
    create.add_argument("source", help="the instance to replicate (the set's primary)")
    create.add_argument("name")
    create.add_argument("--count", type=int, default=1, help="1 to 5 (default 1)")
    create.add_argument("--flavor", help="default: the source's flavor")
    create.add_argument("--mode", choices=("async", "sync"), help="the set's replication mode")
    for name, text in (
        ("promote", "switchover: make this replica the primary, losing nothing"),
        ("eject", "failover: replace this dead primary with its best replica"),
        ("detach", "make this replica a standalone instance"),
        ("events", "the set's changes of primary"),
    ):
        actions.add_parser(name, help=text).add_argument("instance")
    settings = actions.add_parser("set", help="the set's settings (on its primary)")
    settings.add_argument("instance")
    settings.add_argument("--mode", choices=("async", "sync"))
    settings.add_argument("--auto-failover", choices=("on", "off"))


def add_event_parser(sub: Any) -> None:
    """``cellar event list``: the same as ``cellar replica events``."""
    event = sub.add_parser("event", help="an instance's replication events")
    actions = event.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the set's changes of primary").add_argument("instance")


def show_events(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance}/replication_events"
    emit(client.call("GET", path)["replication_events"], args.format, EVENT_COLUMNS)
    return 0


def run(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance if args.action != 'create' else args.source}"
    if args.action == "create":
        body: dict[str, Any] = {
            "name": args.name, "replica_of": args.source, "replica_count": args.count,
        }  # fmt: skip
        if args.flavor:
            body["flavorRef"] = args.flavor
        if args.mode:
            body["replication"] = {"mode": args.mode}
        emit(client.call("POST", "/instances", {"instance": body})["instance"], args.format)
    elif args.action in ("promote", "eject"):
        name = {"promote": "promote_to_replica_source", "eject": "eject_replica_source"}
        client.call("POST", f"{path}/action", {name[args.action]: {}})
        print(f"{args.action} of {args.instance} started", file=sys.stderr)
    elif args.action == "detach":
        client.call("PUT", path, {"instance": {"replica_of": None}})
        print(f"detaching {args.instance}", file=sys.stderr)
    elif args.action == "events":
        show_events(args, client)
    else:
        settings: dict[str, Any] = {}
        if args.mode:
            settings["mode"] = args.mode
        if args.auto_failover:
            settings["auto_failover"] = args.auto_failover == "on"
        if not settings:
            print("error: give --mode or --auto-failover", file=sys.stderr)
            return 2
        client.call("PUT", path, {"instance": {"replication": settings}})
    return 0
