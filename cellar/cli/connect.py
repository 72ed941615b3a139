"""``cellar instance connect``: the engine's own client, pointed at the instance over TLS.

The instance's CA goes to a temporary file (mode 0600) that the client checks the
server's certificate against; the file is removed when the client exits. No password
is passed on: each client asks for it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from cellar.cli.client import Client
from cellar.cli.errors import CliError

# datastore type: (client programs, the first one found is run; the package with them)
CLIENTS = {
    "postgresql": (("psql",), "postgresql-client"),
    "mariadb": (("mysql", "mariadb"), "mariadb-client"),
    "redis": (("redis-cli",), "redis-tools"),
}


def add_options(connect: argparse.ArgumentParser) -> None:
    connect.add_argument("instance")
    connect.add_argument("--user", help="the database user (default: the client's own)")
    connect.add_argument(
        "--database", help="the database to open (Redis: its number; default: the client's)"
    )


def _conninfo(value: str) -> str:
    """A libpq connection string value, quoted when it holds spaces or quotes."""
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def client_argv(
    datastore: str,
    host: str,
    port: int,
    ca_file: str,
    user: str | None = None,
    database: str | None = None,
    program: str | None = None,
) -> list[str]:
    """The command that opens the engine's client on ``host:port``, checking the
    server's certificate against ``ca_file``; the client asks for the password."""
    if datastore not in CLIENTS:
        raise CliError(f"no client is known for datastore {datastore!r}")
    program = program or CLIENTS[datastore][0][0]
    if datastore == "postgresql":
        settings = {"host": host, "port": str(port), "user": user, "dbname": database,
                    "sslmode": "verify-full", "sslrootcert": ca_file}  # fmt: skip
        conninfo = " ".join(f"{k}={_conninfo(v)}" for k, v in settings.items() if v is not None)
        return [program, conninfo]
    if datastore == "mariadb":
        argv = [program, "-h", host, "-P", str(port)]
        argv += ["-u", user] if user else []
        argv += ["-p", f"--ssl-ca={ca_file}", "--ssl-verify-server-cert"]
        return argv + ([database] if database else [])
    argv = [program, "-h", host, "-p", str(port), "--tls", "--cacert", ca_file]
    if database is not None:
        if not database.isdigit():
            raise CliError(f"a Redis database is a number, not {database!r}")
        argv += ["-n", database]
    return argv + (["--user", user] if user else []) + ["--askpass"]


def find_program(datastore: str) -> str | None:
    programs, _package = CLIENTS[datastore]
    return next((p for p in programs if shutil.which(p)), None)


@contextlib.contextmanager
def ca_file(pem: str) -> Iterator[str]:
    """The PEM in a file only its owner can read, removed afterwards."""
    handle, path = tempfile.mkstemp(prefix="cellar-ca-", suffix=".pem")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(pem)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def run_client(argv: list[str]) -> int:
    """Run the client in the foreground; Ctrl-C is the client's, not ours."""
    child = subprocess.Popen(argv)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace, client: Client) -> int:
    view: dict[str, Any] = client.call("GET", f"/instances/{args.instance}")["instance"]
    datastore = str((view.get("datastore") or {}).get("type"))
    connection = view.get("connection") or {}
    if not connection.get("port"):
        raise CliError(
            f"instance {args.instance} has no address to connect to yet "
            f"(status {view.get('status')})"
        )
    if datastore not in CLIENTS:
        raise CliError(f"no client is known for datastore {datastore!r}")
    program = find_program(datastore)
    if program is None:
        programs, package = CLIENTS[datastore]
        print(
            f"error: {' or '.join(programs)} is not installed; it comes with the {package} package",
            file=sys.stderr,
        )
        return 2
    pem = client.call("GET", f"/instances/{args.instance}/ssl")["ssl"]["ca_certificate"]
    with ca_file(pem) as path:
        argv = client_argv(datastore, connection["host"], int(connection["port"]), path,
                           args.user, args.database, program)  # fmt: skip
        return run_client(argv)
