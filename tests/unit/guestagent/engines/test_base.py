"""The frame every engine shares: prepare's status and marker, status, start, delegations."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellar.errors import InvalidInput
from guestagent.engines.base import MARKER, Engine, SqlEngine
from guestagent.engines.messages import (
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
    VolumeUsage,
)
from guestagent.errors import EngineDown, EngineError, NotPrepared, Unsupported
from tests.unit.guestagent.support import Sleeper


class MemoryAdmin:
    """Users and databases in memory; ``down`` makes every call fail like a lost server."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.databases: dict[str, Database] = {}
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise EngineDown("sketch is not accepting connections")

    def create_user(self, request: User) -> bool:
        created = request.name not in self.users
        self.users.setdefault(request.name, request)
        return created

    def list_users(self) -> list[User]:
        return [dataclasses.replace(u, password="") for u in self.users.values()]

    def delete_user(self, request: DeleteUserRequest) -> bool:
        return self.users.pop(request.name, None) is not None

    def count_sessions(self, request: CountSessionsRequest) -> int:
        return 2 if request.name in self.users else 0

    def change_password(self, request: User) -> bool:
        return request.name in self.users

    def enable_root(self, password: str) -> str:
        return "root"

    def disable_root(self) -> bool:
        return True

    def get_configuration(self, names: list[str]) -> dict[str, str]:
        return {}

    def metrics(self) -> dict[str, float]:
        return {"connections": float(len(self.users)), "uptime_seconds": 12.0}

    def create_database(self, request: Database) -> bool:
        created = request.name not in self.databases
        self.databases.setdefault(request.name, request)
        return created

    def list_databases(self) -> list[Database]:
        return list(self.databases.values())

    def delete_database(self, request: DeleteDatabaseRequest) -> bool:
        return self.databases.pop(request.name, None) is not None

    def grant_access(self, request: GrantAccessRequest) -> None:
        pass

    def revoke_access(self, request: RevokeAccessRequest) -> bool:
        return False


class MemoryReplication:
    def enable(self, request: EnableReplicationRequest) -> None:
        pass

    def state(self) -> ReplicationState:
        return ReplicationState(role="primary", writable=True)


class Sketch(Engine):
    """The smallest engine: its server a sleeping Python, its users in memory."""

    name = "sketch"
    version = "1"
    process: Sleeper
    admin: MemoryAdmin

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.process = Sleeper(data_dir)
        self.admin = MemoryAdmin()
        self.replication = MemoryReplication()
        self.failure: BaseException | None = None
        self.inside: threading.Event | None = None  # set_up waits for it, when given
        self.seen: list[str] = []

    def _check_prepare(self, request: PrepareRequest) -> PrepareRequest:
        if request.memory_mb < 0:
            raise InvalidInput("memory_mb must not be negative")
        return dataclasses.replace(request, memory_mb=request.memory_mb or 64)

    def _set_up(self, request: PrepareRequest) -> str:
        self.seen.append(f"set up with {request.memory_mb} MB")
        if self.inside is not None:
            self.seen.append(self.status().detail)
            self.inside.wait(5)
        if self.failure is not None:
            raise self.failure
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        created = sum(self.admin.create_user(u) for u in request.users)
        return f"{created} new users"

    def _after_prepared(self, request: PrepareRequest) -> None:
        self.seen.append(f"after, marker {'written' if self.prepared() else 'missing'}")

    def backup(self, request: BackupRequest) -> Iterator[BackupPiece]:
        raise Unsupported("sketches keep no backups")

    def restore(self, start: RestoreStart, chunks: Iterator[bytes]) -> int:
        raise Unsupported("sketches keep no backups")

    def check_consistency(self) -> ConsistencyReport:
        return ConsistencyReport(ok=True)

    def stop_writes(self) -> ReplicationState:
        return self.replication.state()

    def promote(self, wait_for_position: int, timeout: float) -> ReplicationState:
        return self.replication.state()

    def follow(self, source: ReplicationSource) -> None:
        pass


class SqlSketch(SqlEngine, Sketch):
    name = "sqlsketch"
    admin: MemoryAdmin


@pytest.fixture
def sketch(tmp_path: Path) -> Iterator[Sketch]:
    engine = Sketch(tmp_path / "data")
    try:
        yield engine
    finally:
        engine.stop()


ALICE = User("alice", "alice-pw-1")


def test_prepare_runs_the_set_up_then_writes_the_marker(sketch: Sketch) -> None:
    assert sketch.status().status is ServiceStatus.NEW

    assert sketch.prepare(PrepareRequest(users=(ALICE,))) is ServiceStatus.HEALTHY

    assert sketch.seen == ["set up with 64 MB", "after, marker written"]
    assert json.loads((sketch.data_dir / MARKER).read_text()) == {
        "engine": "sketch",
        "version": "1",
    }
    assert sketch.status().status is ServiceStatus.HEALTHY
    assert [u.name for u in sketch.list_users()] == ["alice"]


def test_count_sessions_goes_to_the_admin_once_prepared(sketch: Sketch) -> None:
    sketch.prepare(PrepareRequest(users=(ALICE,)))

    assert sketch.count_sessions(CountSessionsRequest("alice")) == 2
    assert sketch.count_sessions(CountSessionsRequest("bob")) == 0


def test_a_refused_request_changes_nothing(sketch: Sketch) -> None:
    with pytest.raises(InvalidInput, match="must not be negative"):
        sketch.prepare(PrepareRequest(memory_mb=-1))

    assert sketch.seen == []
    assert sketch.status().status is ServiceStatus.NEW


def test_the_status_is_building_while_the_set_up_runs(sketch: Sketch) -> None:
    sketch.inside = threading.Event()
    sketch.inside.set()

    sketch.prepare(PrepareRequest())

    assert sketch.seen[1] == "prepare is running"


@pytest.mark.parametrize(
    ("failure", "raised", "detail"),
    [
        (EngineError("sketch refused: disk full"), EngineError, "sketch refused: disk full"),
        (InvalidInput("user 'x' exists"), InvalidInput, "user 'x' exists"),
        (RuntimeError("secret detail"), EngineError, "prepare failed: RuntimeError"),
    ],
)
def test_a_failed_set_up_is_reported_until_the_next_prepare(
    sketch: Sketch, failure: Exception, raised: type[Exception], detail: str
) -> None:
    sketch.failure = failure

    with pytest.raises(raised) as caught:
        sketch.prepare(PrepareRequest())

    assert str(caught.value) == detail
    assert not (sketch.data_dir / MARKER).exists()
    assert sketch.status() == StatusReport(ServiceStatus.FAILED, detail)
    sketch.failure = None
    assert sketch.prepare(PrepareRequest()) is ServiceStatus.HEALTHY
    assert sketch.status().status is ServiceStatus.HEALTHY


def test_status_tells_a_crash_from_a_stop_and_from_a_server_that_does_not_answer(
    sketch: Sketch,
) -> None:
    sketch.prepare(PrepareRequest())

    sketch.admin.down = True
    assert sketch.status().detail == "sketch is not accepting connections"
    sketch.admin.down = False
    sketch.stop()
    assert (sketch.status().status, sketch.status().detail) == (
        ServiceStatus.SHUTDOWN,
        "sleeper is not running",
    )
    sketch.start()
    child = sketch.process._child
    assert child is not None
    child.kill()
    child.wait(timeout=5)
    assert sketch.status().status is ServiceStatus.FAILED
    assert sketch.status().detail.startswith("sleepy exited with code -9")


def test_a_failed_start_is_reported_until_a_start_works(sketch: Sketch) -> None:
    sketch.prepare(PrepareRequest())
    sketch.stop()
    sketch.process.ready = False
    sketch.process.start_timeout = 0.1

    with pytest.raises(EngineError, match="did not accept connections in time"):
        sketch.start()
    assert sketch.status().status is ServiceStatus.FAILED

    sketch.process.ready = True
    sketch.start()
    assert sketch.status().status is ServiceStatus.HEALTHY


def test_the_calls_of_an_unprepared_engine_are_refused(sketch: Sketch) -> None:
    for call in (
        lambda: sketch.create_user(ALICE),
        sketch.list_users,
        lambda: sketch.delete_user(DeleteUserRequest("alice")),
        lambda: sketch.count_sessions(CountSessionsRequest("alice")),
        lambda: sketch.enable_root("root-pw-1"),
        sketch.replication_state,
        sketch.start,
    ):
        with pytest.raises(NotPrepared):
            call()


class MeasuredSketch(Sketch):
    """A sketch whose data volume reports ``usage`` (zeros: it could not be read)."""

    usage = VolumeUsage(used_bytes=3 * 2**30, total_bytes=10 * 2**30)

    def volume_usage(self) -> VolumeUsage:
        return self.usage


def test_metrics_are_the_admins_with_the_containers_memory_and_the_volumes_usage(
    tmp_path: Path,
) -> None:
    engine = MeasuredSketch(tmp_path / "data")
    with pytest.raises(NotPrepared):
        engine.metrics()
    engine.prepare(PrepareRequest(users=(ALICE,)))
    engine.cgroup_dir = tmp_path / "cgroup"
    engine.cgroup_dir.mkdir()
    (engine.cgroup_dir / "memory.current").write_text("268435456\n")
    try:
        values = engine.metrics()
    finally:
        engine.stop()

    assert values == {
        "connections": 1.0,
        "uptime_seconds": 12.0,
        "memory_bytes": 268435456.0,
        "volume_used_bytes": 3.0 * 2**30,
    }


def test_metrics_leave_out_what_the_container_does_not_show(tmp_path: Path) -> None:
    engine = MeasuredSketch(tmp_path / "data")
    engine.usage = VolumeUsage()
    engine.cgroup_dir = tmp_path / "no-cgroup"
    engine.prepare(PrepareRequest())
    try:
        assert engine.metrics() == {"connections": 0.0, "uptime_seconds": 12.0}
    finally:
        engine.stop()


def test_an_engine_without_named_databases_refuses_them_before_anything_else(
    sketch: Sketch,
) -> None:
    with pytest.raises(Unsupported, match="sketch has no named databases"):
        sketch.create_database(Database("shop"))
    with pytest.raises(Unsupported):
        sketch.list_databases()


def test_a_sql_engine_hands_databases_to_its_admin(tmp_path: Path) -> None:
    engine = SqlSketch(tmp_path / "data")
    with pytest.raises(NotPrepared):
        engine.create_database(Database("shop"))
    engine.prepare(PrepareRequest())
    try:
        assert engine.create_database(Database("shop"))
        assert not engine.create_database(Database("shop"))
        assert [d.name for d in engine.list_databases()] == ["shop"]
        assert engine.delete_database(DeleteDatabaseRequest("shop"))
    finally:
        engine.stop()


def test_an_engine_without_parameters_refuses_a_configuration(sketch: Sketch) -> None:
    sketch.prepare(PrepareRequest())

    with pytest.raises(InvalidInput, match="not a parameter of sketch 1"):
        sketch.apply_configuration({"max_connections": "10"})
    with pytest.raises(Unsupported, match="no configuration parameters"):
        sketch.apply_configuration({})


def test_logs_are_the_servers_under_the_engines_name(sketch: Sketch) -> None:
    assert sketch.logs() == {"sketch": sketch.process.log_file}
