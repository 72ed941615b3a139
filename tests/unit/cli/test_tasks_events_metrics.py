"""``cellar task``, ``cellar event``, ``cellar metrics`` and ``cellar instance list
--all-projects``: what each sends and shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cellar.cli import main as cli
from cellar.cli import replicas
from tests.unit.cli.support import RecordingClient

TASK = {"id": "t1", "workflow": "provision", "state": "DONE", "step": "done",
        "created": "2026-12-04T10:00:00Z", "duration": 12.5}  # fmt: skip
EVENT = {"kind": "switchover", "state": "DONE", "old_primary": "i1", "new_primary": "i2",
         "started": "2026-12-04T10:00:00Z", "seconds": 3.2}  # fmt: skip
SAMPLES = [
    {"at": "2026-12-04T10:00:00Z", "connections": 3, "transactions_per_second": None},
    {"at": "2026-12-04T10:00:10Z", "connections": 4, "transactions_per_second": 12.5,
     "replication_lag_seconds": 0.2},
]  # fmt: skip
METRICS = {"metrics": {"instance_id": "i1", "datastore": "postgresql", "interval_seconds": 10.0,
                       "since": "2026-12-04T09:00:00Z", "samples": SAMPLES}}  # fmt: skip


def run(argv: list[str], answer: Any) -> RecordingClient:
    client = RecordingClient(answer)
    args = cli.parser().parse_args(argv)
    assert cli.HANDLERS[args.command](args, client) == 0  # type: ignore[arg-type]
    return client


def test_task_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    client = run(["task", "list", "i1"], {"tasks": [TASK]})
    assert client.sent == [("GET", "/instances/i1/tasks", None)]
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "WORKFLOW", "STATE", "STEP", "CREATED", "DURATION"]
    assert row.split()[:3] == ["t1", "provision", "DONE"]
    client = run(["-f", "json", "task", "show", "t1"], {"task": TASK})
    assert client.sent == [("GET", "/tasks/t1", None)]
    assert json.loads(capsys.readouterr().out) == TASK


def test_event_list_is_replica_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.HANDLERS["event"] is replicas.show_events
    answer = {"replication_events": [EVENT]}
    client = run(["event", "list", "i1"], answer)
    shown = capsys.readouterr().out
    again = run(["replica", "events", "i1"], answer)
    assert client.sent == again.sent == [("GET", "/instances/i1/replication_events", None)]
    assert capsys.readouterr().out == shown and "switchover" in shown


def test_metrics_shows_a_table_of_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    client = run(["metrics", "i1", "--minutes", "15"], METRICS)
    assert client.sent == [("GET", "/instances/i1/metrics?minutes=15", None)]
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["AT", "CONNECTIONS", "TRANSACTIONS_PER_SECOND",
                              "REPLICATION_LAG_SECONDS"]  # fmt: skip
    assert first.split() == ["2026-12-04T10:00:00Z", "3"]
    assert second.split() == ["2026-12-04T10:00:10Z", "4", "12.5", "0.2"]


def test_metrics_as_json_is_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    client = run(["-f", "json", "metrics", "i1"], METRICS)
    assert client.sent == [("GET", "/instances/i1/metrics?minutes=60", None)]
    assert json.loads(capsys.readouterr().out) == METRICS


def test_metrics_without_samples_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    run(["metrics", "i1"], {"metrics": {**METRICS["metrics"], "samples": []}})
    out, err = capsys.readouterr()
    assert out == "" and "no samples of instance i1 since 2026-12-04T09:00:00Z" in err


def test_instance_list_all_projects_uses_the_mgmt_route(capsys: pytest.CaptureFixture[str]) -> None:
    listed = {"id": "i1", "name": "orders", "status": "ACTIVE", "project_id": "p-2",
              "datastore": {"type": "postgresql", "version": "15"}, "flavor": {"id": "2"},
              "hostname": "10.0.0.5", "port": 40001}  # fmt: skip
    client = run(["instance", "list", "--all-projects"], {"instances": [listed]})
    assert client.sent == [("GET", "/mgmt/instances", None)]
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["PROJECT_ID", "ID"]
    assert row.split()[:3] == ["p-2", "i1", "orders"]
    client = run(["instance", "list"], {"instances": [listed]})
    assert client.sent == [("GET", "/instances", None)]
    assert "PROJECT_ID" not in capsys.readouterr().out
