"""``cellar configuration ...``: the method, path and body each command sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cellar.cli import configurations
from cellar.cli import main as cli
from cellar.cli.errors import CliError
from tests.unit.cli.support import RecordingClient

GROUP = {"id": "c1", "name": "tuned", "values": {"work_mem": 8192}, "datastore_name": "postgresql",
         "datastore_version_name": "15", "instance_count": 0, "links": []}  # fmt: skip
PARAMETER = {"name": "work_mem", "type": "integer", "min": 64, "restart_required": False}
ANSWER = {
    "configuration": GROUP,
    "configurations": [GROUP],
    "instances": [{"id": "i1", "name": "orders"}],
    "configuration-parameters": [PARAMETER],
    "instance": {"configuration": {"work_mem": "4MB"}},
}


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["configuration", "list"], ("GET", "/configurations", None)),
        (["configuration", "show", "c1"], ("GET", "/configurations/c1", None)),
        (["configuration", "create", "tuned", "--datastore", "postgresql", "--version", "15",
          "--set", "work_mem=8192", "--set", "autovacuum=false",
          "--set", "random_page_cost=1.5", "--set", "log_statement=ddl"],
         ("POST", "/configurations", {"configuration": {
             "name": "tuned", "datastore": {"type": "postgresql", "version": "15"},
             "values": {"work_mem": 8192, "autovacuum": False, "random_page_cost": 1.5,
                        "log_statement": "ddl"}}})),
        (["configuration", "create", "cache", "--datastore", "redis"],
         ("POST", "/configurations", {"configuration": {
             "name": "cache", "datastore": {"type": "redis"}, "values": {}}})),
        (["configuration", "update", "c1", "--set", "work_mem=16384"],
         ("PATCH", "/configurations/c1", {"configuration": {"values": {"work_mem": 16384}}})),
        (["configuration", "replace", "c1", "--set", "autovacuum=true", "--name", "lean"],
         ("PUT", "/configurations/c1",
          {"configuration": {"values": {"autovacuum": True}, "name": "lean"}})),
        (["configuration", "delete", "c1"], ("DELETE", "/configurations/c1", None)),
        (["configuration", "instances", "c1"], ("GET", "/configurations/c1/instances", None)),
        (["configuration", "attach", "i1", "c1"],
         ("PUT", "/instances/i1", {"instance": {"configuration": "c1"}})),
        (["configuration", "detach", "i1"],
         ("PUT", "/instances/i1", {"instance": {"configuration": None}})),
        (["configuration", "parameters", "postgresql", "15"],
         ("GET", "/datastores/postgresql/versions/15/parameters", None)),
        (["configuration", "default", "i1"], ("GET", "/instances/i1/configuration", None)),
    ],
)  # fmt: skip
def test_configuration_commands_use_troves_routes(
    argv: list[str], sent: tuple[str, str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(argv)
    assert cli.HANDLERS[args.command] is configurations.run
    assert configurations.run(args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]


def test_one_parameter_is_shown_from_its_own_route(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient(PARAMETER)
    argv = ["-f", "json", "configuration", "parameters", "postgresql", "15", "work_mem"]
    assert configurations.run(cli.parser().parse_args(argv), client) == 0  # type: ignore[arg-type]
    assert client.sent == [("GET", "/datastores/postgresql/versions/15/parameters/work_mem", None)]
    assert json.loads(capsys.readouterr().out) == PARAMETER


def test_default_prints_the_running_values(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(["configuration", "default", "i1"])
    assert configurations.run(args, client) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out.split() == ["work_mem", "4MB"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("100", 100), ("-3", -3), ("0.5", 0.5), ("1e3", 1000.0), ("true", True), ("FALSE", False),
     ("128MB", "128MB"), ("allkeys-lru", "allkeys-lru"), ("", ""), ("1.2.3", "1.2.3")],
)  # fmt: skip
def test_set_values_keep_numbers_and_booleans(text: str, value: Any) -> None:
    found = configurations.value_of(text)
    assert found == value and type(found) is type(value)


def test_a_set_without_a_value_and_an_empty_update_are_refused() -> None:
    with pytest.raises(CliError, match="NAME=VALUE"):
        configurations.values_of(["work_mem"])
    client = RecordingClient()
    args = cli.parser().parse_args(["configuration", "update", "c1"])
    with pytest.raises(CliError, match="--set"):
        configurations.run(args, client)  # type: ignore[arg-type]
    assert client.sent == []
