"""``cellar configuration ...``: configuration groups, their parameters, and attaching them."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from cellar.cli.client import Client
from cellar.cli.errors import CliError
from cellar.cli.output import emit

COLUMNS = ("id", "name", "datastore_name", "datastore_version_name", "instance_count")
PARAMETER_COLUMNS = ("name", "type", "min", "max", "restart_required")
INTEGER = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def value_of(text: str) -> Any:
    """A ``--set`` value as JSON has it: ``100`` a number, ``0.5`` a float,
    ``true``/``false`` a boolean, anything else (``128MB``) the text."""
    if INTEGER.fullmatch(text):
        return int(text)
    if FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def values_of(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--set takes NAME=VALUE, not {pair!r}")
        values[name.strip()] = value_of(text.strip())
    return values


def add_parser(sub: Any) -> None:
    config = sub.add_parser(
        "configuration", help="configuration groups: engine parameters set on instances"
    )
    actions = config.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the project's configuration groups")
    for name, text in (
        ("show", "one group and its values"),
        ("delete", "remove a group that no instance uses"),
        ("instances", "the instances the group is attached to"),
    ):
        actions.add_parser(name, help=text).add_argument("id")
    create = actions.add_parser("create", help="a new group for one datastore version")
    create.add_argument("name")
    create.add_argument("--datastore", default="postgresql", help="default: postgresql")
    create.add_argument("--version", help="default: the datastore's default version")
    create.add_argument("--description")
    update = actions.add_parser("update", help="change some values, keeping the others")
    update.add_argument("id")
    replace = actions.add_parser("replace", help="make the values exactly the --set ones")
    replace.add_argument("id")
    replace.add_argument("--name", help="a new name")
    replace.add_argument("--description", help="a new description")
    for command in (create, update, replace):
        command.add_argument(
            "--set", action="append", default=[], metavar="NAME=VALUE", dest="values",
            help="a parameter's value; numbers and true/false are sent as such; repeatable",
        )  # fmt: skip
    attach = actions.add_parser("attach", help="give an instance the group's values")
    attach.add_argument("instance")
    attach.add_argument("id")
    detach = actions.add_parser("detach", help="take the group off an instance")
    detach.add_argument("instance")
    params = actions.add_parser("parameters", help="the parameters a group may set")
    params.add_argument("datastore", help="postgresql, mariadb or redis")
    params.add_argument("version", help="e.g. 15")
    params.add_argument("name", nargs="?", help="one parameter (default: all)")
    actions.add_parser(
        "default", help="the running engine's value of every parameter a group may set"
    ).add_argument("instance")


def run(args: argparse.Namespace, client: Client) -> int:
    if args.action == "list":
        emit(client.call("GET", "/configurations")["configurations"], args.format, COLUMNS)
    elif args.action == "show":
        emit(client.call("GET", f"/configurations/{args.id}")["configuration"], args.format)
    elif args.action == "create":
        body: dict[str, Any] = {
            "name": args.name,
            "datastore": {"type": args.datastore},
            "values": values_of(args.values),
        }
        if args.version:
            body["datastore"]["version"] = args.version
        if args.description:
            body["description"] = args.description
        made = client.call("POST", "/configurations", {"configuration": body})["configuration"]
        emit(made, args.format)
    elif args.action in ("update", "replace"):
        return _change(args, client)
    elif args.action == "delete":
        client.call("DELETE", f"/configurations/{args.id}")
        print(f"deleting configuration {args.id}", file=sys.stderr)
    elif args.action == "instances":
        found = client.call("GET", f"/configurations/{args.id}/instances")["instances"]
        emit(found, args.format, ("id", "name"))
    elif args.action in ("attach", "detach"):
        config = args.id if args.action == "attach" else None
        client.call("PUT", f"/instances/{args.instance}", {"instance": {"configuration": config}})
        done = f"attaching {config} to" if config else "detaching the configuration of"
        print(f"{done} instance {args.instance}", file=sys.stderr)
    elif args.action == "parameters":
        path = f"/datastores/{args.datastore}/versions/{args.version}/parameters"
        if args.name:
            emit(client.call("GET", f"{path}/{args.name}"), args.format)
        else:
            found = client.call("GET", path)["configuration-parameters"]
            emit(found, args.format, PARAMETER_COLUMNS)
    elif args.action == "default":
        live = client.call("GET", f"/instances/{args.instance}/configuration")
        emit(live["instance"]["configuration"], args.format)
    return 0


def _change(args: argparse.Namespace, client: Client) -> int:
    """``update`` merges the values into the group's (PATCH); ``replace`` puts them
    in place of the group's (PUT), with its name and description if given."""
    values = values_of(args.values)
    if args.action == "update" and not values:
        raise CliError("configuration update: give at least one --set NAME=VALUE")
    body: dict[str, Any] = {"values": values}
    if args.action == "replace":
        body.update({k: v for k in ("name", "description") if (v := getattr(args, k))})
    method = "PATCH" if args.action == "update" else "PUT"
    client.call(method, f"/configurations/{args.id}", {"configuration": body})
    print(
        f"changing configuration {args.id}: {', '.join(sorted(values)) or 'no values'}; "
        "the instances it is attached to follow",
        file=sys.stderr,
    )
    return 0
