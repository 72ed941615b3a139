"""Helpers shared by the guest agent's tests: free ports, real servers, a fake engine."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pwd
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cellar.logs import JsonFormatter
from guestagent.engines.base import Engine
from guestagent.engines.mariadb import MariadbEngine, MariadbOptions
from guestagent.engines.messages import (
    BackupDone,
    BackupPiece,
    BackupRequest,
    ConsistencyReport,
    CountSessionsRequest,
    Database,
    DeleteDatabaseRequest,
    DeleteUserRequest,
    EnableReplicationRequest,
    GrantAccessRequest,
    PrepareRequest,
    ReplicationSource,
    ReplicationState,
    RestoreStart,
    RevokeAccessRequest,
    ServiceStatus,
    StatusReport,
    User,
)
from guestagent.engines.os_user import OsUser
from guestagent.engines.postgres import PostgresEngine, PostgresOptions
from guestagent.engines.redis import RedisEngine, RedisOptions
from guestagent.engines.server_process import ServerProcess
from guestagent.logfile import LogFile
from guestagent.server import AgentServer

logger = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADB_BASEDIR = Path("/usr")
REDIS_SERVER = Path("/usr/bin/redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_os_user() -> str | None:
    """The account to run PostgreSQL as here, or skip the test with the reason."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server binaries are not installed in {PG_BIN}")
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root, and there is no 'postgres' user to run PostgreSQL as")
    return "postgres"


@contextmanager
def postgres_engine() -> Iterator[PostgresEngine]:
    """A PostgresEngine on a fresh data dir, a free port and its own socket dir."""
    os_user = postgres_os_user()
    root = Path(tempfile.mkdtemp(prefix="cellar-agent-test-"))
    root.chmod(0o755)
    options = PostgresOptions(
        port=free_port(),
        socket_dir=root / "run",
        listen_addresses="127.0.0.1",
        bin_dir=PG_BIN,
        os_user=os_user,
    )
    engine = PostgresEngine(root / "data", options)
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


def redis_os_user() -> str | None:
    """The account to run Redis as here, or skip the test with the reason."""
    if not REDIS_SERVER.exists():
        pytest.skip(f"{REDIS_SERVER} is not installed (scripts/test-deps.sh installs it)")
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("redis")
    except KeyError:
        pytest.skip("running as root, and there is no 'redis' user to run Redis as")
    return "redis"


@contextmanager
def redis_engine() -> Iterator[RedisEngine]:
    """A RedisEngine on a fresh data dir, a free port on 127.0.0.1 and its own socket."""
    os_user = redis_os_user()
    root = Path(tempfile.mkdtemp(prefix="cellar-redis-test-"))
    root.chmod(0o755)
    options = RedisOptions(
        port=free_port(),
        unix_socket=root / "run" / "redis.sock",
        bind="127.0.0.1",
        binary=REDIS_SERVER,
        os_user=os_user,
    )
    engine = RedisEngine(root / "data", options)
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


def mariadb_os_user() -> str | None:
    """The account to run MariaDB as here, or skip the test with the reason."""
    if not (MARIADB_BASEDIR / "sbin" / "mariadbd").exists():
        pytest.skip(f"MariaDB 10.11 is not installed ({MARIADB_BASEDIR}/sbin/mariadbd missing)")
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        pytest.skip("running as root, and there is no 'mysql' user to run MariaDB as")
    return "mysql"


@contextmanager
def mariadb_engine() -> Iterator[MariadbEngine]:
    """A MariadbEngine on a fresh data dir, a free port and its own socket."""
    os_user = mariadb_os_user()
    root = Path(tempfile.mkdtemp(prefix="cellar-agent-test-"))
    root.chmod(0o755)
    options = MariadbOptions(
        port=free_port(),
        socket=root / "run" / "mysqld.sock",
        bind_address="127.0.0.1",
        basedir=MARIADB_BASEDIR,
        os_user=os_user,
    )
    engine = MariadbEngine(root / "data", options)
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclasses.dataclass
class Served:
    """An AgentServer on a free localhost port with a client channel to it."""

    server: AgentServer
    port: int
    channel: Any
    stub: Any
    health: Any


class JsonLog:
    """Captures the process's log lines as Cellar writes them (with the request id)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter("guestagent"))
        self.handler.setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@contextmanager
def json_log() -> Iterator[JsonLog]:
    log = JsonLog()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(log.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        root.removeHandler(log.handler)
        root.setLevel(previous)


SLEEPER = "import time; print('sleeping', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ignoring SIGTERM', flush=True); time.sleep(60)"
)


class Sleeper(ServerProcess):
    """Runs ``script`` until stopped; answers once ``ready`` and its first line is out."""

    name = "sleeper"
    program = "sleepy"
    command_names = ("python",)

    def __init__(self, folder: Path, script: str = SLEEPER) -> None:
        super().__init__(folder / "sleeper.pid", OsUser(), 5.0, LogFile(folder / "log"))
        self.script = script
        self.ready = True
        self.probes = 0

    def _command(self) -> list[str]:
        return [sys.executable, "-c", self.script]

    def _probe(self) -> str | None:
        self.probes += 1
        return None if self.ready and self.recent_log() else "not yet"


class FakeEngine(Engine):
    """An engine that records its calls and raises what a test asks it to."""

    name = "fake"
    version = "1"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.report = StatusReport(ServiceStatus.NEW)
        self.failures: dict[str, BaseException] = {}
        self.calls: list[tuple[str, object]] = []
        self.databases: list[Database] = []
        self.users: list[User] = []
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.log_files: dict[str, LogFile] = {}
        self.backup_chunks: list[bytes] = [b"first", b"second"]
        self.restored_bytes = b""
        self.role = ReplicationState(role="primary", writable=True)
        self.metric_values: dict[str, float] = {"connections": 4.0, "cache_hit_ratio": 0.75}
        self.session_counts: dict[str, int] = {}  # what count_sessions answers, by user

    def logs(self) -> dict[str, LogFile]:
        return self.log_files

    def _call(self, method: str, request: object = None) -> None:
        self.calls.append((method, request))
        failure = self.failures.get(method)
        if failure is not None:
            raise failure

    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        return request

    def _set_up(self, request: PrepareRequest) -> str:
        self._call("prepare", request)
        self.report = StatusReport(ServiceStatus.HEALTHY)
        return "nothing new"

    def status(self) -> StatusReport:
        self._call("status")
        return self.report

    def create_database(self, request: Database) -> bool:
        self._call("create_database", request)
        self.databases.append(request)
        return True

    def list_databases(self) -> list[Database]:
        self._call("list_databases")
        return list(self.databases)

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        self._call("delete_database", request)
        return False

    def create_user(self, request: User) -> bool:
        self._call("create_user", request)
        self.users.append(request)
        return True

    def list_users(self) -> list[User]:
        self._call("list_users")
        logger.info("fake listing users")
        return list(self.users)

    def delete_user(self, request: DeleteUserRequest) -> bool:
        self._call("delete_user", request)
        return True

    def count_sessions(self, request: CountSessionsRequest) -> int:
        self._call("count_sessions", request)
        return self.session_counts.get(request.name, 0)

    def change_password(self, request: User) -> bool:
        self._call("change_password", request)
        return any(u.name == request.name for u in self.users)

    def grant_access(self, request: GrantAccessRequest) -> None:
        self._call("grant_access", request)

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        self._call("revoke_access", request)
        return True

    def enable_root(self, password: str) -> str:
        self._call("enable_root", "***")
        return "superuser"

    def disable_root(self) -> bool:
        self._call("disable_root", None)
        return True

    def metrics(self) -> dict[str, float]:
        self._call("metrics")
        return dict(self.metric_values)

    def backup(self, request: BackupRequest) -> Iterator[BackupPiece]:
        self._call("backup", request)
        yield from self.backup_chunks
        yield BackupDone(checkpoint="cp-1", format="fake")

    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        self._call("restore", start)
        self.restored_bytes = b"".join(chunks)
        return len(self.restored_bytes)

    def check_consistency(self) -> ConsistencyReport:
        self._call("check_consistency")
        return ConsistencyReport(ok=True, detail="fake data is fine")

    def enable_replication(self, request: EnableReplicationRequest) -> None:
        self._call("enable_replication", request.replicas)

    def replication_state(self) -> ReplicationState:
        self._call("replication_state")
        return self.role

    def stop_writes(self) -> ReplicationState:
        self._call("stop_writes")
        self.role = dataclasses.replace(self.role, writable=False)
        return self.role

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        self._call("promote", wait_for_position)
        self.role = ReplicationState(role="primary", position_value=wait_for_position)
        self.role = dataclasses.replace(self.role, writable=True)
        return self.role

    def follow(self, source: ReplicationSource) -> None:
        self._call("follow", source)
        self.role = ReplicationState(role="replica", source_host=source.host)

    def start(self) -> None:
        self._call("start")
        self.report = StatusReport(ServiceStatus.HEALTHY)
        self.started.set()

    def stop(self) -> None:
        self._call("stop")
        self.report = StatusReport(ServiceStatus.SHUTDOWN, "stopped")
        self.stopped.set()
