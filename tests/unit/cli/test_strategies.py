"""``cellar strategy ...``: scheduled backups, with the schedule checked before sending."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cellar.cli import main as cli
from cellar.cli import strategies
from tests.unit.cli.support import FakeCloud, RecordingClient

STRATEGY = {"instance_id": "i1", "schedule": "0 3 * * *", "keep_count": 7, "keep_days": None,
            "verify": True, "incremental": False, "next_run_at": "2026-12-05T03:00:00Z",
            "last_backup_id": None}  # fmt: skip
ANSWER = {"backup_strategy": STRATEGY, "backup_strategies": [STRATEGY]}


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["strategy", "create", "i1", "--schedule", "30 2 * * 1-5", "--keep-count", "7",
          "--keep-days", "30", "--verify", "--incremental"],
         ("POST", "/backup_strategies", {"backup_strategy": {
             "instance_id": "i1", "schedule": "30 2 * * 1-5", "keep_count": 7, "keep_days": 30,
             "verify": True, "incremental": True}})),
        (["strategy", "create", "i1"],
         ("POST", "/backup_strategies", {"backup_strategy": {"instance_id": "i1"}})),
        (["strategy", "list"], ("GET", "/backup_strategies", None)),
        (["strategy", "list", "--instance", "i1"],
         ("GET", "/backup_strategies?instance_id=i1", None)),
        (["strategy", "delete", "i1"], ("DELETE", "/backup_strategies?instance_id=i1", None)),
    ],
)  # fmt: skip
def test_strategy_commands_use_troves_routes(
    argv: list[str], sent: tuple[str, str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(argv)
    assert cli.HANDLERS[args.command] is strategies.run
    assert strategies.run(args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * *", "@reboot", "0 0 3 * * *", "0 24 * * *", "*/0 * * * *", "0 3 31 2 *"],
)
def test_a_schedule_the_api_would_refuse_is_refused_before_logging_in(
    schedule: str, cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["strategy", "create", "i1", "--schedule", schedule], http=cloud)
    assert stopped.value.code == 2 and cloud.sent == []
    assert "argument --schedule: schedule" in capsys.readouterr().err


def test_the_error_names_the_wrong_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["strategy", "create", "i1", "--schedule", "0 25 * * *"])
    assert "the hour field '25' must be within 0-23" in capsys.readouterr().err


def test_next_run_is_the_next_matching_minute_in_utc() -> None:
    now = dt.datetime(2026, 12, 4, 10, 15)  # a Friday
    assert strategies.next_run("0 3 * * *", now) == dt.datetime(2026, 12, 5, 3, 0)
    assert strategies.next_run("30 2 * * 1-5", now) == dt.datetime(2026, 12, 7, 2, 30)
    assert strategies.next_run("0 4 * * sun", now) == dt.datetime(2026, 12, 6, 4, 0)
    assert strategies.next_run("@weekly", now) == dt.datetime(2026, 12, 6, 0, 0)


def test_list_shows_the_next_run(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(["strategy", "list"])
    assert strategies.run(args, client) == 0  # type: ignore[arg-type]
    header, row = capsys.readouterr().out.splitlines()
    assert "NEXT_RUN_AT" in header and "2026-12-05T03:00:00Z" in row
