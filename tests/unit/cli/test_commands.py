from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cellar.cli import engine_logs, identity, replicas
from cellar.cli import main as cli
from cellar.cli.output import Progress


class FakeClient:
    def __init__(self, views: list[dict[str, Any]]) -> None:
        self.views = views
        self.sent: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.sent.append((method, path, body))
        if method == "POST":
            return {"instance": self.views[0]}
        return {"instance": self.views.pop(0) if len(self.views) > 1 else self.views[0]}


def test_progress_prints_each_step_once_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    task = {"step": "prepare", "step_number": 4, "steps": 5, "description": "preparing the engine"}
    progress.show("BUILD", task)
    progress.show("BUILD", task)
    progress.show("ACTIVE", None)
    lines = stream.getvalue().splitlines()
    assert lines == ["BUILD 3/5: preparing the engine", "ACTIVE"]


def test_create_wait_sends_the_trove_body_and_ends_on_active(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda _s: None)
    building = {
        "id": "i1",
        "status": "BUILD",
        "task": {"step": "prepare", "step_number": 4, "steps": 5},
    }
    active = {"id": "i1", "status": "ACTIVE", "connection": {"host": "127.0.0.1", "port": 5}}
    client = FakeClient([building, building, active])
    args = cli.parser().parse_args(
        [
            "-f",
            "json",
            "instance",
            "create",
            "db1",
            "--database",
            "shop",
            "--user",
            "al:pw",
            "--wait",
        ]
    )
    assert cli.cmd_instance(args, client) == 0  # type: ignore[arg-type]
    method, path, body = client.sent[0]
    assert (method, path) == ("POST", "/instances")
    assert body["instance"]["users"] == [
        {"name": "al", "password": "pw", "databases": [{"name": "shop"}]}
    ]
    assert json.loads(capsys.readouterr().out)["status"] == "ACTIVE"


def test_wait_returns_1_with_the_fault_on_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda _s: None)
    failed = {"id": "i1", "status": "ERROR", "fault": {"message": "image not found"}}
    assert cli.wait_for(FakeClient([failed]), "i1", 10) == 1  # type: ignore[arg-type]
    assert "image not found" in capsys.readouterr().err


class RecordingClient:
    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.sent.append((method, path, body))
        return self.answer


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (
            ["db-user", "password", "i1", "al", "--password", "n3w"],
            ("PUT", "/instances/i1/users", {"users": [{"name": "al", "password": "n3w"}]}),
        ),
        (
            ["db-user", "grant", "i1", "al", "shop", "books"],
            (
                "PUT",
                "/instances/i1/users/al/databases",
                {"databases": [{"name": "shop"}, {"name": "books"}]},
            ),
        ),
        (
            ["db-user", "revoke", "i1", "al", "shop"],
            ("DELETE", "/instances/i1/users/al/databases/shop", None),
        ),
    ],
)
def test_db_user_changes_use_troves_routes(argv: list[str], sent: tuple[str, str, Any]) -> None:
    client = RecordingClient()
    assert cli.cmd_db_user(cli.parser().parse_args(argv), client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]


def test_user_is_the_identity_user_and_db_user_the_database_one() -> None:
    args = cli.parser().parse_args(["user", "create", "bob", "--password", "pw"])
    assert cli.HANDLERS[args.command] is identity.run_user
    args = cli.parser().parse_args(["db-user", "create", "i1", "bob", "--password", "pw"])
    assert cli.HANDLERS[args.command] is cli.cmd_db_user
    with pytest.raises(SystemExit):  # the database user's old form is no identity user
        cli.parser().parse_args(["user", "create", "i1", "bob", "--database", "shop"])


def test_root_enable_prints_the_password_once(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient({"user": {"name": "postgres", "password": "s3cret-generated"}})
    args = cli.parser().parse_args(["-f", "json", "root", "enable", "i1"])
    assert cli.cmd_root(args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [("POST", "/instances/i1/root", {})]
    assert json.loads(capsys.readouterr().out) == {
        "name": "postgres",
        "password": "s3cret-generated",
    }


def test_root_disable_sends_a_delete(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient(None)
    args = cli.parser().parse_args(["root", "disable", "i1"])
    assert cli.cmd_root(args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [("DELETE", "/instances/i1/root", None)]
    assert "can no longer log in" in capsys.readouterr().err


def test_backup_create_and_restore_send_troves_bodies() -> None:
    client = RecordingClient({"backup": {"id": "b1", "status": "NEW"}})
    args = cli.parser().parse_args(["backup", "create", "i1", "nightly", "--incremental"])
    assert cli.cmd_backup(args, client) == 0  # type: ignore[arg-type]
    assert client.sent[0] == (
        "POST", "/backups", {"backup": {"name": "nightly", "instance": "i1", "incremental": 1}},
    )  # fmt: skip
    restore = RecordingClient({"instance": {"id": "i2", "status": "BUILD"}})
    args = cli.parser().parse_args(["instance", "create", "copy", "--restore", "b1"])
    assert cli.cmd_instance(args, restore) == 0  # type: ignore[arg-type]
    body = restore.sent[0][2]["instance"]
    assert body["restorePoint"] == {"backupRef": "b1"}
    assert "datastore" not in body and "volume" not in body


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (
            ["replica", "create", "p1", "copy", "--count", "2", "--mode", "sync"],
            ("POST", "/instances", {"instance": {"name": "copy", "replica_of": "p1",
             "replica_count": 2, "replication": {"mode": "sync"}}}),
        ),
        (
            ["replica", "promote", "r1"],
            ("POST", "/instances/r1/action", {"promote_to_replica_source": {}}),
        ),
        (
            ["replica", "eject", "p1"],
            ("POST", "/instances/p1/action", {"eject_replica_source": {}}),
        ),
        (
            ["replica", "detach", "r1"],
            ("PUT", "/instances/r1", {"instance": {"replica_of": None}}),
        ),
        (
            ["replica", "set", "p1", "--auto-failover", "off"],
            ("PUT", "/instances/p1", {"instance": {"replication": {"auto_failover": False}}}),
        ),
    ],
)  # fmt: skip
def test_replica_commands_use_troves_routes(argv: list[str], sent: tuple[str, str, Any]) -> None:
    client = RecordingClient({"instance": {"id": "r9", "status": "BUILD"}})
    assert replicas.run(cli.parser().parse_args(argv), client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]


LOG_VIEW = {"name": "postgresql.log", "type": "SYS", "status": "Published", "size": 9,
            "published": 9, "pending": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["log", "list", "i1"], ("GET", "/instances/i1/log", None)),
        (["log", "show", "i1", "pg"], ("POST", "/instances/i1/log", {"name": "pg"})),
        (["log", "publish", "i1", "pg"],
         ("POST", "/instances/i1/log", {"name": "pg", "publish": 1})),
        (["log", "discard", "i1", "pg"],
         ("POST", "/instances/i1/log", {"name": "pg", "discard": 1})),
        (["log", "tail", "i1", "pg", "--lines", "5"],
         ("GET", "/instances/i1/log/pg?lines=5", None)),
    ],
)  # fmt: skip
def test_log_commands_use_troves_log_route(
    argv: list[str], sent: tuple[str, str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingClient({"logs": [LOG_VIEW], "log": {**LOG_VIEW, "lines": ["LOG:  ready"]}})
    args = cli.parser().parse_args(["-f", "json", *argv])
    assert engine_logs.run(args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]
    shown = json.loads(capsys.readouterr().out)
    assert (shown[0] if isinstance(shown, list) else shown)["name"] in ("postgresql.log", "pg")
