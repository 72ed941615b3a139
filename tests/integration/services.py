"""The production profile's services for the tests: a real PostgreSQL and a real RabbitMQ.

Both run from Debian's packages as processes of the test session, on free
loopback ports, in a temporary folder; ``scripts/test-deps.sh`` installs them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from tests.integration.stack import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBIT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _wait_port(port: int, within: float, what: str, log: Path) -> None:
    import socket

    end = time.monotonic() + within
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(
        f"{what} did not open port {port}:\n{log.read_text(errors='replace')[-3000:]}"
    )


class PostgresServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/cellar"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres", "postgres")
        uid, gid = _ids("postgres")
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--no-sync"],
            check=True, capture_output=True, user=uid, group=gid,
        )  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=uid, group=gid,
            )  # fmt: skip
        _wait_port(self.port, 30, "PostgreSQL", self.log)
        end = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                    autocommit=True,
                ) as conn:  # fmt: skip
                    conn.execute("CREATE DATABASE cellar")
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)


class RabbitServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.log = root / "rabbitmq.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "RABBITMQ_NODENAME": f"cellartest{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "rabbitmq", "rabbitmq")
        uid, gid = _ids("rabbitmq")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(RABBIT)], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, user=uid, group=gid,
            )  # fmt: skip
        _wait_port(self.port, 90, "RabbitMQ", self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        subprocess.run(
            ["epmd", "-kill"], env=self._env(), capture_output=True, check=False, timeout=10
        )
