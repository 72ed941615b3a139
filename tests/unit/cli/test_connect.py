"""``cellar instance connect``: the engine's client command, and the CA file it checks with."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cellar.cli import connect
from cellar.cli import main as cli
from cellar.cli.errors import CliError
from tests.unit.cli.support import RecordingClient

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def view(datastore: str, connection: dict[str, Any] | None = None) -> dict[str, Any]:
    shown = {"id": "i1", "status": "ACTIVE", "datastore": {"type": datastore, "version": "x"},
             "connection": connection or {"host": "10.0.0.5", "port": 40001}}  # fmt: skip
    return {"instance": shown}


def answering(datastore: str, **connection: Any) -> RecordingClient:
    return RecordingClient(
        answers={
            ("GET", "/instances/i1"): view(datastore, connection or None),
            ("GET", "/instances/i1/ssl"): {"ssl": {"ca_certificate": PEM, "required": True}},
        }
    )


def test_psql_gets_one_connection_string_that_verifies_the_server() -> None:
    argv = connect.client_argv("postgresql", "db.test", 40001, "/tmp/ca.pem", "alice", "shop")
    assert argv == [
        "psql",
        "host=db.test port=40001 user=alice dbname=shop sslmode=verify-full "
        "sslrootcert=/tmp/ca.pem",
    ]


def test_psql_leaves_out_what_is_not_given_and_quotes_spaces() -> None:
    argv = connect.client_argv("postgresql", "db.test", 5, "/tmp/my dir/ca.pem")
    assert argv[1] == "host=db.test port=5 sslmode=verify-full sslrootcert='/tmp/my dir/ca.pem'"


def test_mysql_asks_for_the_password_and_verifies_the_server() -> None:
    argv = connect.client_argv("mariadb", "db.test", 40002, "/tmp/ca.pem", "alice", "shop")
    assert argv == ["mysql", "-h", "db.test", "-P", "40002", "-u", "alice", "-p",
                    "--ssl-ca=/tmp/ca.pem", "--ssl-verify-server-cert", "shop"]  # fmt: skip
    bare = connect.client_argv("mariadb", "db.test", 40002, "/tmp/ca.pem", program="mariadb")
    assert bare == ["mariadb", "-h", "db.test", "-P", "40002", "-p", "--ssl-ca=/tmp/ca.pem",
                    "--ssl-verify-server-cert"]  # fmt: skip


def test_redis_cli_speaks_tls_and_asks_for_the_password() -> None:
    argv = connect.client_argv("redis", "db.test", 40003, "/tmp/ca.pem", "app", "2")
    assert argv == ["redis-cli", "-h", "db.test", "-p", "40003", "--tls", "--cacert",
                    "/tmp/ca.pem", "-n", "2", "--user", "app", "--askpass"]  # fmt: skip
    with pytest.raises(CliError, match="number"):
        connect.client_argv("redis", "db.test", 40003, "/tmp/ca.pem", "app", "shop")


def test_connect_runs_the_client_with_the_ca_in_a_private_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def run_client(argv: list[str]) -> int:
        ca = Path(argv[-1].rpartition("sslrootcert=")[2])
        seen.update(argv=argv, pem=ca.read_text(), mode=stat.S_IMODE(os.stat(ca).st_mode), ca=ca)
        return 3

    monkeypatch.setattr(connect.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(connect, "run_client", run_client)
    client = answering("postgresql")
    args = cli.parser().parse_args(["instance", "connect", "i1", "--user", "alice"])
    assert cli.cmd_instance(args, client) == 3  # type: ignore[arg-type]
    assert [path for _m, path, _b in client.sent] == ["/instances/i1", "/instances/i1/ssl"]
    assert seen["argv"][1].startswith("host=10.0.0.5 port=40001 user=alice sslmode=verify-full")
    assert seen["pem"] == PEM and seen["mode"] == 0o600
    assert not seen["ca"].exists()


def test_a_missing_client_names_its_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(connect.shutil, "which", lambda _name: None)
    client = answering("mariadb")
    args = cli.parser().parse_args(["instance", "connect", "i1"])
    assert cli.cmd_instance(args, client) == 2  # type: ignore[arg-type]
    assert "mariadb-client" in capsys.readouterr().err
    assert [path for _m, path, _b in client.sent] == ["/instances/i1"]


def test_an_instance_without_an_address_is_refused() -> None:
    client = RecordingClient({"instance": {"id": "i1", "status": "BUILD",
                                           "datastore": {"type": "redis"}}})  # fmt: skip
    args = cli.parser().parse_args(["instance", "connect", "i1"])
    with pytest.raises(CliError, match="status BUILD"):
        cli.cmd_instance(args, client)  # type: ignore[arg-type]
