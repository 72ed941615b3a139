"""Entry point of the ``cellar`` command."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import requests

from cellar.cli import (
    audit,
    configurations,
    connect,
    debug_access,
    engine_logs,
    identity,
    keys,
    metrics,
    quotas,
    replicas,
    strategies,
    tasks,
)
from cellar.cli.client import Client
from cellar.cli.errors import ApiError, CliError
from cellar.cli.login import Asker, Credentials, Keystone, add_options
from cellar.cli.output import Progress, emit
from cellar.cli.tokens import TokenCache, cache_dir

INSTANCE_COLUMNS = ("id", "name", "status", "datastore", "flavor", "connection")


def _instance_row(view: dict[str, Any]) -> dict[str, Any]:
    ds = view.get("datastore") or {}
    conn = view.get("connection") or (
        {"host": view["hostname"], "port": view["port"]} if view.get("port") else {}
    )
    return {
        "id": view["id"],
        "project_id": view.get("project_id"),
        "name": view["name"],
        "status": view["status"],
        "datastore": f"{ds.get('type')} {ds.get('version')}",
        "flavor": (view.get("flavor") or {}).get("id"),
        "connection": f"{conn['host']}:{conn['port']}" if conn else "",
    }


def _user_arg(raw: str, databases: list[str]) -> dict[str, Any]:
    name, sep, password = raw.partition(":")
    if not sep:
        password = getpass.getpass(f"password for user {name}: ")
    return {"name": name, "password": password, "databases": [{"name": d} for d in databases]}


def wait_for(client: Client, instance_id: str, timeout: float, gone_ok: bool = False) -> int:
    """Poll until the instance is ACTIVE (0), ERROR (1), or deleted when ``gone_ok``."""
    progress = Progress()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            try:
                view = client.call("GET", f"/instances/{instance_id}")["instance"]
            except ApiError as exc:
                if gone_ok and exc.status == 404:
                    progress.show("DELETED", None)
                    return 0
                raise
            progress.show(view["status"], view.get("task"))
            if view["status"] == "ERROR":
                progress.close()
                print(f"error: {(view.get('fault') or {}).get('message')}", file=sys.stderr)
                return 1
            if view["status"] == "ACTIVE" and not gone_ok and not view.get("task"):
                return 0
            time.sleep(0.3)
    finally:
        progress.close()
    print(f"error: still waiting after {timeout:.0f} s", file=sys.stderr)
    return 1


def cmd_instance(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        body: dict[str, Any] = {
            "name": args.name,
            "flavorRef": args.flavor,
            "databases": [{"name": d} for d in args.database],
            "users": [_user_arg(u, args.database) for u in args.user],
        }
        if args.restore:  # the backup's datastore and size, unless asked otherwise
            body["restorePoint"] = {"backupRef": args.restore}
        if args.size or not args.restore:
            body["volume"] = {"size": args.size or 1}
        if args.datastore or not args.restore:
            body["datastore"] = {"type": args.datastore or "postgresql", "version": args.version}
        body["access"] = {"is_public": args.public, "allowed_cidrs": args.allowed_cidr}
        if args.require_tls:
            body["tls"] = {"required": True}
        view = client.call("POST", "/instances", {"instance": body})["instance"]
        if args.wait:
            code = wait_for(client, view["id"], args.timeout)
            view = client.call("GET", f"/instances/{view['id']}")["instance"]
            emit(view, args.format)
            return code
        emit(view, args.format)
    elif args.action == "list":  # every project's, for admins, over Trove's mgmt route
        path = "/mgmt/instances" if args.all_projects else "/instances"
        columns = ("project_id", *INSTANCE_COLUMNS) if args.all_projects else INSTANCE_COLUMNS
        views = client.call("GET", path)["instances"]
        emit(views if args.format == "json" else [_instance_row(v) for v in views],
             args.format, columns)  # fmt: skip
    elif args.action == "connect":
        return connect.run(args, client)
    elif args.action == "show":
        view = client.call("GET", f"/instances/{args.id}")["instance"]
        ssl = client.call("GET", f"/instances/{args.id}/ssl")["ssl"]
        pem = ssl.pop("ca_certificate")
        if args.format == "json":
            emit({**view, "ssl": {**ssl, "ca_certificate": pem}}, args.format)
        else:
            emit({**view, "ssl": ssl}, args.format)
            print(f"ca_certificate (verify the engine's certificate with it):\n{pem.strip()}")
    elif args.action == "update":
        change = _instance_change(args)
        client.call("PUT", f"/instances/{args.id}", {"instance": change})
        print(f"updating instance {args.id}: {', '.join(sorted(change))}", file=sys.stderr)
    elif args.action == "ca":  # the PEM alone: cellar instance ca ID > ca.pem
        print(client.call("GET", f"/instances/{args.id}/ssl")["ssl"]["ca_certificate"].strip())
    elif args.action == "delete":
        client.call("DELETE", f"/instances/{args.id}")
        print(f"deleting instance {args.id}", file=sys.stderr)
        if args.wait:
            return wait_for(client, args.id, args.timeout, gone_ok=True)
    return 0


def _instance_change(args: argparse.Namespace) -> dict[str, Any]:
    """The body of ``cellar instance update``: only what the flags ask to change."""
    change: dict[str, Any] = {}
    if args.name:
        change["name"] = args.name
    if args.allowed_cidr or args.any_source:
        change["access"] = {"allowed_cidrs": [] if args.any_source else args.allowed_cidr}
    if args.tls is not None:
        change["tls"] = {"required": args.tls == "required"}
    if not change:
        raise CliError("instance update: give --name, --allowed-cidr, --any-source or --tls")
    return change


def cmd_database(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance}/databases"
    if args.action == "create":
        client.call("POST", path, {"databases": [{"name": n} for n in args.names]})
        print(f"creating databases {', '.join(args.names)}", file=sys.stderr)
    elif args.action == "list":
        emit(client.call("GET", path)["databases"], args.format, ("name",))
    elif args.action == "delete":
        client.call("DELETE", f"{path}/{args.names[0]}")
        print(f"deleting database {args.names[0]}", file=sys.stderr)
    return 0


def cmd_db_user(args: argparse.Namespace, client: Client) -> int:
    """``cellar db-user ...``: the users inside an instance's database engine."""
    path = f"/instances/{args.instance}/users"
    if args.action == "create":
        password = args.password or getpass.getpass(f"password for user {args.name}: ")
        user = {
            "name": args.name,
            "password": password,
            "databases": [{"name": d} for d in args.database],
        }
        client.call("POST", path, {"users": [user]})
        print(f"creating user {args.name}", file=sys.stderr)
    elif args.action == "list":
        emit(client.call("GET", path)["users"], args.format, ("name", "host", "databases"))
    elif args.action == "delete":
        client.call("DELETE", f"{path}/{args.name}")
        print(f"deleting user {args.name}", file=sys.stderr)
    elif args.action == "password":
        password = args.password or getpass.getpass(f"new password for user {args.name}: ")
        client.call("PUT", path, {"users": [{"name": args.name, "password": password}]})
        print(f"changing the password of user {args.name}", file=sys.stderr)
    elif args.action == "grant":
        databases = [{"name": d} for d in args.databases]
        client.call("PUT", f"{path}/{args.name}/databases", {"databases": databases})
        print(f"granting {args.name} access to {', '.join(args.databases)}", file=sys.stderr)
    elif args.action == "revoke":
        client.call("DELETE", f"{path}/{args.name}/databases/{args.databases[0]}")
        print(f"revoking the access of {args.name} to {args.databases[0]}", file=sys.stderr)
    elif args.action == "access":
        emit(client.call("GET", f"{path}/{args.name}/databases")["databases"], args.format,
             ("name",))  # fmt: skip
    return 0


BACKUP_COLUMNS = ("id", "name", "instance_id", "type", "status", "size_bytes", "created")


def wait_backup(client: Client, backup_id: str, timeout: float) -> int:
    """Poll until the backup is COMPLETED (0) or FAILED (1), showing its status."""
    progress = Progress()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            view = client.call("GET", f"/backups/{backup_id}")["backup"]
            progress.show(view["status"], None)
            if view["status"] == "COMPLETED":
                return 0
            if view["status"] == "FAILED":
                progress.close()
                print(f"error: {view.get('fault')}", file=sys.stderr)
                return 1
            time.sleep(0.3)
    finally:
        progress.close()
    print(f"error: still waiting after {timeout:.0f} s", file=sys.stderr)
    return 1


def cmd_backup(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name, "instance": args.instance}
        if args.incremental:
            body["incremental"] = 1
        view = client.call("POST", "/backups", {"backup": body})["backup"]
        code = wait_backup(client, view["id"], args.timeout) if args.wait else 0
        emit(client.call("GET", f"/backups/{view['id']}")["backup"], args.format)
        return code
    if args.action == "list":
        query = f"?instance_id={args.instance}" if args.instance else ""
        views = client.call("GET", f"/backups{query}")["backups"]
        emit(views, args.format, BACKUP_COLUMNS)
    elif args.action == "show":
        emit(client.call("GET", f"/backups/{args.id}")["backup"], args.format)
    elif args.action == "delete":
        client.call("DELETE", f"/backups/{args.id}")
        print(f"deleting backup {args.id}", file=sys.stderr)
    elif args.action == "verify":
        client.call("POST", f"/backups/{args.id}/action", {"verify": {}})
        print(f"verifying backup {args.id}; see 'cellar backup show {args.id}'", file=sys.stderr)
    return 0


def cmd_root(args: argparse.Namespace, client: Client) -> int:
    path = f"/instances/{args.instance}/root"
    if args.action == "enable":
        emit(client.call("POST", path, {})["user"], args.format)
    elif args.action == "disable":
        reply = client.call("DELETE", path)
        if reply and "task" in reply:
            print(f"disabling the superuser; task {reply['task']['id']}", file=sys.stderr)
        else:
            print(f"the superuser of {args.instance} can no longer log in", file=sys.stderr)
    else:
        emit(client.call("GET", path), args.format)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cellar", description="Cellar: databases on demand.")
    top.add_argument(
        "--url",
        help="Cellar's API, e.g. http://127.0.0.1:8779 (default: CELLAR_URL, "
        "else the database endpoint of the token's catalog)",
    )
    top.add_argument("-f", "--format", choices=("table", "json"), default="table")
    add_options(top)
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API, a worker and beat in the foreground")
    sub.add_parser("login", help="log in (asks for the password if not given) and keep the token")
    sub.add_parser("logout", help="revoke the kept token and remove it")
    admin = sub.add_parser("admin", help="operator commands, run where Cellar runs")
    admin_sub = admin.add_subparsers(dest="action", required=True)
    admin_sub.add_parser(
        "reset-password", help="give the admin user a new password, written to admin-openrc"
    )

    inst = sub.add_parser("instance", help="database instances")
    inst_sub = inst.add_subparsers(dest="action", required=True)
    create = inst_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--flavor", default="2")
    create.add_argument("--size", type=int, help="volume size in GB (default 1)")
    create.add_argument("--datastore", help="postgresql (default), mariadb or redis")
    create.add_argument("--version", help="default: the datastore's default version")
    create.add_argument("--database", action="append", default=[], help="repeatable")
    create.add_argument("--restore", metavar="BACKUP", help="make it from this backup")
    create.add_argument(
        "--user", action="append", default=[],
        help="NAME:PASSWORD (or NAME to be asked); granted every --database; repeatable",
    )  # fmt: skip
    create.add_argument(
        "--public", action="store_true",
        help="publish the port on CELLAR_PUBLIC_HOST (default: the private address)",
    )  # fmt: skip
    for command in (create, update := inst_sub.add_parser("update")):
        command.add_argument(
            "--allowed-cidr", action="append", default=[], metavar="CIDR",
            help="only this network may connect (repeatable; default: any)",
        )  # fmt: skip
    create.add_argument("--require-tls", action="store_true", help="refuse plaintext logins")
    update.add_argument("--name", help="a new name")
    update.add_argument("--any-source", action="store_true", help="let any network connect")
    update.add_argument("--tls", choices=("required", "optional"), help="the TLS policy")
    for command in (create, inst_sub.add_parser("delete")):
        command.add_argument("--wait", action="store_true", help="show progress until done")
        command.add_argument("--timeout", type=float, default=600.0)
    inst_sub.add_parser("list").add_argument(
        "--all-projects", action="store_true", help="every project's instances (admins)"
    )
    connect.add_options(
        inst_sub.add_parser("connect", help="open the engine's own client, over TLS")
    )
    inst_sub.add_parser("ca", help="print the CA certificate that signed the engine's")
    for name in ("show", "delete", "ca", "update"):
        found = inst_sub.choices[name] if name in inst_sub.choices else inst_sub.add_parser(name)
        found.add_argument("id")

    db = sub.add_parser("database", help="databases of an instance")
    db_sub = db.add_subparsers(dest="action", required=True)
    for name, many in (("create", "+"), ("list", "*"), ("delete", 1)):
        command = db_sub.add_parser(name)
        command.add_argument("instance")
        command.add_argument("names", nargs=many)

    user = sub.add_parser(
        "db-user", help="users inside an instance's database (identity users: cellar user)"
    )
    user_sub = user.add_subparsers(dest="action", required=True)
    for name in ("create", "list", "delete"):
        command = user_sub.add_parser(name)
        command.add_argument("instance")
        if name != "list":
            command.add_argument("name")
    user_sub.choices["create"].add_argument("--password")
    user_sub.choices["create"].add_argument("--database", action="append", default=[])
    for name, many in (("password", 0), ("grant", "+"), ("revoke", 1), ("access", 0)):
        command = user_sub.add_parser(name)
        command.add_argument("instance")
        command.add_argument("name")
        if many:
            command.add_argument("databases", nargs=many)
    user_sub.choices["password"].add_argument("--password", help="default: asked")

    backup = sub.add_parser("backup", help="backups")
    backup_sub = backup.add_subparsers(dest="action", required=True)
    make = backup_sub.add_parser("create")
    make.add_argument("instance")
    make.add_argument("name")
    make.add_argument("--incremental", action="store_true", help="build on the latest backup")
    make.add_argument("--wait", action="store_true", help="show progress until done")
    make.add_argument("--timeout", type=float, default=3600.0)
    backup_sub.add_parser("list").add_argument("--instance")
    for name in ("show", "delete", "verify"):
        backup_sub.add_parser(name).add_argument("id")

    root = sub.add_parser("root", help="the engine's superuser")
    root_sub = root.add_subparsers(dest="action", required=True)
    for name in ("enable", "disable", "show"):
        root_sub.add_parser(name).add_argument("instance")
    replicas.add_parser(sub)
    replicas.add_event_parser(sub)
    engine_logs.add_parser(sub)
    configurations.add_parser(sub)
    strategies.add_parser(sub)
    tasks.add_parser(sub)
    metrics.add_parser(sub)
    identity.add_parsers(sub)
    quotas.add_parsers(sub)
    audit.add_parser(sub)
    keys.add_parser(sub)
    debug_access.add_parser(sub)
    return top


HANDLERS = {
    "instance": cmd_instance,
    "database": cmd_database,
    "db-user": cmd_db_user,
    "root": cmd_root,
    "backup": cmd_backup,
    "replica": replicas.run,
    "log": engine_logs.run,
    "debug-access": debug_access.run,
    "settings": debug_access.run_settings,
    "event": replicas.show_events,
    "configuration": configurations.run,
    "strategy": strategies.run,
    "task": tasks.run,
    "metrics": metrics.run,
    "project": identity.run_project,
    "user": identity.run_user,
    "role": identity.run_role,
    "credential": identity.run_credential,
    "quota": quotas.run_quota,
    "limits": quotas.run_limits,
    "audit": audit.run,
}


def keystone_for(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    ask: Asker | None,
    http: requests.Session | None = None,
) -> Keystone:
    """Who logs in where, from the options and the ``OS_*`` variables; tokens kept."""
    credentials = Credentials.load(args, environ, default_url=cellar_url(args, environ))
    return Keystone(credentials, http or requests.Session(), TokenCache(cache_dir(environ)), ask)


def cellar_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    return str(args.url or environ.get("CELLAR_URL", "")).strip()


def cmd_login(keystone: Keystone) -> int:
    token = keystone.login()
    user, project = token.user, token.project
    scope = f"project {project.get('name')} ({project.get('id')})" if project else "no project"
    print(
        f"logged in as {user.get('name')} ({user.get('id')}) to {scope} "
        f"until {token.body.get('expires_at')}"
    )
    if keystone.cache is not None:
        print(f"the token is kept in {keystone.cache.path(keystone.key)}", file=sys.stderr)
    return 0


def cmd_logout(keystone: Keystone) -> int:
    if keystone.logout():
        print(f"logged out {keystone.credentials.who()}: the token is revoked and removed")
    else:
        print(f"no kept token for {keystone.credentials.who()}", file=sys.stderr)
    return 0


def cmd_admin(_args: argparse.Namespace) -> int:
    """``cellar admin reset-password``: on the machine that holds Cellar's metadata."""
    from cellar import settings
    from cellar.db import Database
    from cellar.identity.bootstrap import reset_admin_password

    config = settings.load()
    if not config.own_identity:
        print(f"error: the users are kept by the Keystone at {config.auth_url}", file=sys.stderr)
        return 2
    database = Database(config.database_url)
    try:
        database.upgrade()
        path = reset_admin_password(config, database)
    finally:
        database.engine.dispose()
    print(f"the admin user has a new password; its credentials are in {path}")
    return 0


def main(argv: list[str] | None = None, http: requests.Session | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from cellar import logs
        from cellar.serve import serve

        logs.setup("serve")
        return serve()
    try:
        if args.command == "admin":
            return cmd_admin(args)
        if args.command == "secrets":
            return keys.run(args)
        if args.command == "audit" and args.action == "verify" and not args.remote:
            return audit.verify_local(args)
        interactive = args.command == "login" or sys.stdin.isatty()
        keystone = keystone_for(args, os.environ, getpass.getpass if interactive else None, http)
        if args.command == "login":
            return cmd_login(keystone)
        if args.command == "logout":
            return cmd_logout(keystone)
        return HANDLERS[args.command](args, Client(keystone, cellar_url(args, os.environ)))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
