"""Every engine port speaks TLS with a certificate from Cellar's CA that names the
instance's address, and a client that takes the CA from the API checks it fully; with
``"tls": {"required": true}`` a plaintext login is refused (Redis refuses it always)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import redis

from tests.integration.engines import query, redis_client
from tests.integration.stack import Api, Stack

PASSWORD = "Tls-pass-123"
USER = "app"


def _create(api: Api, datastore: str, required: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"tls-{datastore}",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": datastore},
        "tls": {"required": required},
        "users": [{"name": USER, "password": PASSWORD}],
    }
    if datastore != "redis":
        body["databases"] = [{"name": "app"}]
        body["users"][0]["databases"] = [{"name": "app"}]
    made = api.call("POST", "/instances", json={"instance": body})
    assert made.status_code == 202, made.text
    return made.json()["instance"]


@pytest.fixture(scope="module")
def instances(stack: Stack) -> Iterator[dict[tuple[str, bool], dict[str, Any]]]:
    api = Api(stack.url, identity=stack.identity)
    wanted = [("postgresql", True), ("postgresql", False), ("mariadb", True), ("redis", False)]
    made = {key: _create(api, *key) for key in wanted}
    try:
        views = {key: api.wait_instance(v["id"], {"ACTIVE", "ERROR"}) for key, v in made.items()}
        for view in views.values():
            assert view["status"] == "ACTIVE", view.get("fault")
        yield {key: {"api": api, "view": view} for key, view in views.items()}
    finally:
        for view in made.values():
            api.call("DELETE", f"/instances/{view['id']}")
        for view in made.values():
            api.wait_instance(view["id"], {"GONE", "ERROR"})


def _ca(api: Api, instance_id: str, folder: Path) -> Path:
    reply = api.call("GET", f"/instances/{instance_id}/ssl")
    assert reply.status_code == 200, reply.text
    pem = reply.json()["ssl"]["ca_certificate"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    path = folder / "ca.pem"
    path.write_text(pem)
    return path


def _where(view: dict[str, Any]) -> tuple[str, int]:
    return str(view["connection"]["host"]), int(view["connection"]["port"])


@pytest.mark.parametrize("required", [True, False])
def test_postgresql_verifies_the_server_and_refuses_plaintext_when_required(
    instances: dict[tuple[str, bool], dict[str, Any]], tmp_path: Path, required: bool
) -> None:
    found = instances[("postgresql", required)]
    view, api = found["view"], found["api"]
    ca = _ca(api, view["id"], tmp_path)
    assert api.call("GET", f"/instances/{view['id']}/ssl").json()["ssl"]["required"] is required
    host, port = _where(view)
    dsn = f"host={host} port={port} user={USER} password={PASSWORD} dbname=app"
    with psycopg.connect(f"{dsn} sslmode=verify-full sslrootcert={ca}", connect_timeout=10) as c:
        assert query(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
    if required:
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(f"{dsn} sslmode=disable", connect_timeout=10)
    else:
        with psycopg.connect(f"{dsn} sslmode=disable", connect_timeout=10) as plain:
            assert query(plain, "SELECT 1") == [(1,)]
    psql = shutil.which("psql")
    if psql is not None:  # the stock client too, checking the host name
        shown = subprocess.run(
            [psql, f"{dsn} sslmode=verify-full sslrootcert={ca}", "-Atc", "SHOW ssl"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (shown.returncode, shown.stdout.strip()) == (0, "on"), shown.stderr


def test_a_client_that_checks_the_name_refuses_a_name_not_in_the_certificate(
    instances: dict[tuple[str, bool], dict[str, Any]], tmp_path: Path
) -> None:
    found = instances[("postgresql", True)]
    ca = _ca(found["api"], found["view"]["id"], tmp_path)
    host, port = _where(found["view"])
    # reach the right address under a name the certificate does not hold
    where = f"host=elsewhere.invalid hostaddr={host} port={port}"
    dsn = f"{where} user={USER} password={PASSWORD} dbname=app"
    with pytest.raises(psycopg.OperationalError, match=r"does not match|certificate"):
        psycopg.connect(f"{dsn} sslmode=verify-full sslrootcert={ca}", connect_timeout=10)


def test_mariadb_verifies_the_server_and_refuses_plaintext_when_required(
    instances: dict[tuple[str, bool], dict[str, Any]], tmp_path: Path
) -> None:
    found = instances[("mariadb", True)]
    view = found["view"]
    ca = _ca(found["api"], view["id"], tmp_path)
    host, port = _where(view)
    login = {"host": host, "port": port, "user": USER, "password": PASSWORD, "database": "app"}
    checked = pymysql.connect(**login, ssl={"ca": str(ca), "check_hostname": True})
    try:
        cipher = query(checked, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cipher and cipher[0][1], cipher
    finally:
        checked.close()
    mysql = shutil.which("mysql")
    if mysql is not None:  # the stock client too, checking the certificate and its name
        login_args = [f"--host={host}", f"--port={port}", f"--user={USER}", "app"]
        shown = subprocess.run(
            [mysql, *login_args, f"--ssl-ca={ca}", "--ssl-verify-server-cert", "-Nse",
             "SELECT VARIABLE_VALUE <> '' FROM information_schema.SESSION_STATUS"
             " WHERE VARIABLE_NAME = 'Ssl_cipher'"],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "MYSQL_PWD": PASSWORD},
        )  # fmt: skip
        assert (shown.returncode, shown.stdout.strip()) == (0, "1"), shown.stderr
    # MariaDB 10.11 answers a plaintext login under require_secure_transport with 1045,
    # the error of a wrong password, though the same login over TLS passes above
    with pytest.raises(pymysql.err.OperationalError, match=r"insecure transport|Access denied"):
        pymysql.connect(**login, connect_timeout=10, ssl_disabled=True)  # it would negotiate


def test_redis_speaks_tls_alone_on_its_port(
    instances: dict[tuple[str, bool], dict[str, Any]], tmp_path: Path
) -> None:
    found = instances[("redis", False)]
    view = found["view"]
    ca = _ca(found["api"], view["id"], tmp_path)
    assert (
        found["api"].call("GET", f"/instances/{view['id']}/ssl").json()["ssl"]["plaintext_refused"]
    )
    host, port = _where(view)
    client = redis_client(host, port, username=USER, password=PASSWORD, socket_timeout=10)
    try:
        assert client.ping()
    finally:
        client.close()
    cli = shutil.which("redis-cli")
    if cli is not None:
        login = ["--user", USER, "--pass", PASSWORD, "--no-auth-warning"]
        shown = subprocess.run(
            [cli, "-h", host, "-p", str(port), "--tls", "--cacert", str(ca), *login, "PING"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert shown.stdout.strip() == "PONG", shown.stderr
    plain = redis.Redis(host=host, port=port, username=USER, password=PASSWORD, socket_timeout=5)
    try:
        with pytest.raises(redis.RedisError):
            plain.ping()
    finally:
        plain.close()
