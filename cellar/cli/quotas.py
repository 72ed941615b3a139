"""``cellar quota show|set`` (admins, over Trove's ``mgmt/quotas``) and ``cellar limits``
(a project's own limits, over Trove's ``/limits``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cellar.cli.client import Client
from cellar.cli.identity import find_id
from cellar.cli.output import emit

QUOTA_COLUMNS = ("resource", "in_use", "reserved", "limit")
RESOURCES = (
    ("instances", "instances"),
    ("volumes", "GB of volumes"),
    ("backups", "backups"),
    ("ram", "MB of memory"),
)


def add_parsers(sub: Any) -> None:
    quota = sub.add_parser("quota", help="a project's quotas (admins)")
    actions = quota.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="use and limit of each resource")
    show.add_argument("project", nargs="?", help="name or id (default: the token's project)")
    change = actions.add_parser("set", help="change some limits")
    change.add_argument("project", help="name or id")
    for name, unit in RESOURCES:
        change.add_argument(f"--{name}", type=int, metavar="N", help=f"at most N {unit}")
    sub.add_parser("limits", help="the token's project's limits")


def run_quota(args: argparse.Namespace, client: Client) -> int:
    project = find_id(client, "projects", args.project) if args.project else client.project_id
    path = f"/mgmt/quotas/{project}"
    if args.action == "show":
        emit(client.call("GET", path)["quotas"], args.format, QUOTA_COLUMNS)
        return 0
    wanted = {name: getattr(args, name) for name, _unit in RESOURCES}
    changes = {name: value for name, value in wanted.items() if value is not None}
    if not changes:
        print(
            "error: give at least one of --instances, --volumes, --backups, --ram", file=sys.stderr
        )
        return 2
    answer = client.call("PUT", path, {"quotas": changes})
    emit((answer or {}).get("quotas", changes), args.format)
    return 0


def run_limits(args: argparse.Namespace, client: Client) -> int:
    limits = client.call("GET", "/limits")["limits"]
    if args.format == "json":
        emit(limits, args.format)
        return 0
    for entry in limits:
        if entry.get("verb") == "ABSOLUTE":
            emit({k: v for k, v in entry.items() if k != "verb"}, args.format)
    return 0
