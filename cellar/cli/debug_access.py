"""``cellar debug-access ...``: time-limited logins for debugging and production support,
and ``cellar settings ...``: the project's rules for them."""

from __future__ import annotations

import argparse
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit

COLUMNS = ("id", "user", "access", "databases", "state", "requested_by", "expires_at", "reason")


def add_parser(sub: Any) -> None:
    access = sub.add_parser("debug-access", help="time-limited logins to an instance's engine")
    actions = access.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="a login that works for a while; its password is shown once"
    )
    create.add_argument("instance")
    create.add_argument("--reason", required=True, help="why the access is needed (audited)")
    create.add_argument("--access", choices=("read", "write"), default="read")
    create.add_argument(
        "--database", action="append", default=[], dest="databases",
        help="a database the login reaches (repeat for more; not on Redis)",
    )  # fmt: skip
    create.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                        help="how long it works: 60 to 86400 seconds (default 3600)")  # fmt: skip
    actions.add_parser("list", help="the instance's debug logins").add_argument("instance")
    for name, text in (
        ("show", "one debug login"),
        ("revoke", "drop the login now and end its sessions"),
        ("approve", "approve another member's request for write access"),
        ("reject", "refuse another member's request for write access"),
    ):
        command = actions.add_parser(name, help=text)
        command.add_argument("instance")
        command.add_argument("id")
    settings = sub.add_parser("settings", help="the project's rules for self-service actions")
    settings_sub = settings.add_subparsers(dest="action", required=True)
    settings_sub.add_parser("show")
    change = settings_sub.add_parser("set", help="change a rule (the project's admins)")
    change.add_argument(
        "--approve-write-credentials", choices=("true", "false"), required=True,
        help="whether write access through debug-access needs another member's approval",
    )  # fmt: skip


def run(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance}/credentials"
    if args.action == "create":
        body = {"credential": {"reason": args.reason, "access": args.access,
                               "ttl_seconds": args.ttl, "databases": args.databases}}  # fmt: skip
        emit(client.call("POST", path, body)["credential"], args.format)
    elif args.action == "list":
        emit(client.call("GET", path)["credentials"], args.format, COLUMNS)
    elif args.action == "show":
        emit(client.call("GET", f"{path}/{args.id}")["credential"], args.format)
    elif args.action == "revoke":
        emit(client.call("DELETE", f"{path}/{args.id}")["credential"], args.format)
    else:
        answer = client.call("POST", f"{path}/{args.id}/action", {args.action: {}})
        emit(answer["credential"], args.format)
    return 0


def run_settings(args: argparse.Namespace, client: Client) -> int:
    if args.action == "show":
        emit(client.call("GET", "/settings")["settings"], args.format)
    else:
        value = args.approve_write_credentials == "true"
        body = {"settings": {"approve_write_credentials": value}}
        emit(client.call("PUT", "/settings", body)["settings"], args.format)
    return 0
