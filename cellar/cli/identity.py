"""``cellar project|user|role|credential ...``: the identity API, thinly.

Each call goes to ``OS_AUTH_URL``'s v3 API with the token, so the commands work with
Cellar's own identity API and with a real Keystone alike. Projects, users and roles may
be named by name or id, as with the ``openstack`` CLI. ``cellar user`` is about the
people who log in; the users inside a database instance are ``cellar db-user``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cellar.cli.client import Client
from cellar.cli.errors import ApiError, CliError
from cellar.cli.output import emit

PROJECT_COLUMNS = ("id", "name", "enabled", "description")
USER_COLUMNS = ("id", "name", "enabled", "default_project_id", "email")
ROLE_COLUMNS = ("id", "name", "description")
ASSIGNMENT_COLUMNS = ("role", "user", "project")
CREDENTIAL_COLUMNS = ("id", "name", "project_id", "roles", "expires_at")


def add_parsers(sub: Any) -> None:
    project = sub.add_parser("project", help="projects (identity)")
    actions = project.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create")
    create.add_argument("name")
    create.add_argument("--description")
    create.add_argument("--disable", action="store_true", help="made disabled")
    actions.add_parser("list")
    for name in ("show", "delete"):
        actions.add_parser(name).add_argument("project", help="name or id")

    user = sub.add_parser("user", help="users who log in (identity); see db-user for databases")
    actions = user.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create")
    create.add_argument("name")
    change = actions.add_parser("set")
    change.add_argument("user", help="name or id")
    change.add_argument("--name", help="a new name")
    for command in (create, change):
        command.add_argument(
            "--password", nargs="?", const="", metavar="PASSWORD", help="alone: asked twice"
        )
        command.add_argument("--project", help="the user's default project (name or id)")
        command.add_argument("--email")
        command.add_argument("--description")
    create.add_argument("--disable", action="store_true", help="made disabled")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_const", const=True)
    state.add_argument("--disable", dest="enabled", action="store_const", const=False)
    actions.add_parser("list")
    for name in ("show", "delete"):
        actions.add_parser(name).add_argument("user", help="name or id")

    role = sub.add_parser("role", help="roles, and who has them on which project")
    actions = role.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    for name in ("add", "remove"):
        command = actions.add_parser(name)
        command.add_argument("role", help="reader, member or admin (name or id)")
        command.add_argument("--project", required=True, help="name or id")
        command.add_argument("--user", required=True, help="name or id")
    listed = actions.add_parser("assignments", help="who has which role where")
    listed.add_argument("--project", help="name or id")
    listed.add_argument("--user", help="name or id")

    credential = sub.add_parser(
        "credential", help="application credentials: logins for programs, of your token's project"
    )
    actions = credential.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="prints the secret: it is shown only then")
    create.add_argument("name")
    create.add_argument("--secret", help="default: generated")
    create.add_argument("--role", action="append", default=[], help="repeatable; default: all")
    create.add_argument("--expiration", metavar="TIME", help="e.g. 2030-01-31T00:00:00Z")
    create.add_argument("--description")
    actions.add_parser("list")
    actions.add_parser("delete").add_argument("credential", help="name or id")


def find_id(client: Client, kind: str, ref: str) -> str:
    """The id of the ``kind`` (``projects``, ``users``, ``roles``) named ``ref``, or
    whose id is ``ref``."""
    found = client.identity("GET", f"/{kind}", params={"name": ref})[kind]
    if len(found) == 1:
        return str(found[0]["id"])
    if len(found) > 1:
        raise CliError(f"{len(found)} {kind} are named {ref!r}: give the id")
    try:
        return str(client.identity("GET", f"/{kind}/{ref}")[kind[:-1]]["id"])
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(f"no {kind[:-1]} is named {ref!r} or has that id") from exc
        raise


def _new_password(given: str | None, name: str) -> str | None:
    """``--password P``: P; ``--password`` alone: asked twice; absent: None."""
    if given is None or given:
        return given
    first = getpass.getpass(f"password for {name}: ")
    if first != getpass.getpass("the same again: "):
        raise CliError("the two passwords differ")
    return first


def run_project(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name, "enabled": not args.disable}
        if args.description is not None:
            body["description"] = args.description
        emit(client.identity("POST", "/projects", {"project": body})["project"], args.format)
    elif args.action == "list":
        emit(client.identity("GET", "/projects")["projects"], args.format, PROJECT_COLUMNS)
    elif args.action == "show":
        project = find_id(client, "projects", args.project)
        emit(client.identity("GET", f"/projects/{project}")["project"], args.format)
    elif args.action == "delete":
        client.identity("DELETE", f"/projects/{find_id(client, 'projects', args.project)}")
        print(f"deleted project {args.project}", file=sys.stderr)
    return 0


def _user_fields(args: argparse.Namespace, client: Client, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    password = _new_password(args.password, name)
    if password is not None:
        body["password"] = password
    if args.project:
        body["default_project_id"] = find_id(client, "projects", args.project)
    for field in ("email", "description"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    return body


def run_user(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        body = {"name": args.name, "enabled": not args.disable}
        body.update(_user_fields(args, client, args.name))
        emit(client.identity("POST", "/users", {"user": body})["user"], args.format)
    elif args.action == "list":
        emit(client.identity("GET", "/users")["users"], args.format, USER_COLUMNS)
    elif args.action == "show":
        user = find_id(client, "users", args.user)
        emit(client.identity("GET", f"/users/{user}")["user"], args.format)
    elif args.action == "set":
        user = find_id(client, "users", args.user)
        body = _user_fields(args, client, args.user)
        if args.name:
            body["name"] = args.name
        if args.enabled is not None:
            body["enabled"] = args.enabled
        if not body:
            print("error: give something to change, e.g. --password", file=sys.stderr)
            return 2
        client.identity("PATCH", f"/users/{user}", {"user": body})
        print(f"changed user {args.user}: {', '.join(sorted(body))}", file=sys.stderr)
    elif args.action == "delete":
        client.identity("DELETE", f"/users/{find_id(client, 'users', args.user)}")
        print(f"deleted user {args.user}", file=sys.stderr)
    return 0


def _assignment_row(item: dict[str, Any]) -> dict[str, Any]:
    project = (item.get("scope") or {}).get("project") or {}
    return {
        part: (found.get("name") or found.get("id"))
        for part, found in (
            ("role", item.get("role") or {}),
            ("user", item.get("user") or {}),
            ("project", project),
        )
    }


def run_role(args: argparse.Namespace, client: Client) -> int:
    if args.action == "list":
        emit(client.identity("GET", "/roles")["roles"], args.format, ROLE_COLUMNS)
    elif args.action in ("add", "remove"):
        project = find_id(client, "projects", args.project)
        user = find_id(client, "users", args.user)
        role = find_id(client, "roles", args.role)
        method = "PUT" if args.action == "add" else "DELETE"
        client.identity(method, f"/projects/{project}/users/{user}/roles/{role}")
        done = "gave" if args.action == "add" else "took"
        where = "to" if args.action == "add" else "from"
        print(
            f"{done} role {args.role} on project {args.project} {where} user {args.user}",
            file=sys.stderr,
        )
    elif args.action == "assignments":
        params = {"include_names": "1"}
        if args.project:
            params["scope.project.id"] = find_id(client, "projects", args.project)
        if args.user:
            params["user.id"] = find_id(client, "users", args.user)
        found = client.identity("GET", "/role_assignments", params=params)["role_assignments"]
        rows = found if args.format == "json" else [_assignment_row(a) for a in found]
        emit(rows, args.format, ASSIGNMENT_COLUMNS)
    return 0


def _credential_view(credential: dict[str, Any], fmt: str) -> dict[str, Any]:
    """For people, the roles by name."""
    if fmt == "json":
        return credential
    return {**credential, "roles": [r.get("name") for r in credential.get("roles") or []]}


def run_credential(args: argparse.Namespace, client: Client) -> int:
    path = f"/users/{client.user_id}/application_credentials"
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name}
        if args.secret:
            body["secret"] = args.secret
        if args.role:
            body["roles"] = [{"name": r} for r in args.role]
        if args.expiration:
            body["expires_at"] = args.expiration
        if args.description is not None:
            body["description"] = args.description
        made = client.identity("POST", path, {"application_credential": body})
        emit(_credential_view(made["application_credential"], args.format), args.format)
        print("the secret is shown only now: keep it safe", file=sys.stderr)
    elif args.action == "list":
        found = client.identity("GET", path)["application_credentials"]
        emit([_credential_view(c, args.format) for c in found], args.format, CREDENTIAL_COLUMNS)
    elif args.action == "delete":
        named = client.identity("GET", path, params={"name": args.credential})
        matches = named["application_credentials"]
        credential = matches[0]["id"] if len(matches) == 1 else args.credential
        client.identity("DELETE", f"{path}/{credential}")
        print(f"deleted application credential {args.credential}", file=sys.stderr)
    return 0
