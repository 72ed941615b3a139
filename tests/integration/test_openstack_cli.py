"""The stock ``openstack`` CLI, logged in from ``admin-openrc``, makes two teams that
each drive their own database instance and cannot see the other's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cellar import settings
from cellar.identity.bootstrap import openrc_path
from tests.integration.identity import openrc
from tests.integration.stack import Stack, leftovers, remove_leftovers

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def _run(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [OPENSTACK, *args, "-f", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr[-2000:]}"
    return json.loads(done.stdout) if done.stdout.strip() else None


def _quiet(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([OPENSTACK, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr[-2000:]}"


def _env(base: dict[str, str], **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CELLAR_"))}
    return {**env, **base, **values}


def test_two_teams_with_the_stock_cli(stack: Stack) -> None:
    path = openrc_path(settings.load())
    if not settings.load().own_identity or not path.exists():
        pytest.skip("the admin's openrc comes from Cellar's own identity API")
    admin = _env(openrc(path))
    tag = uuid.uuid4().hex[:8]
    teams = {}
    for team in ("a", "b"):
        project = _run(admin, "project", "create", f"cli-{team}-{tag}")
        password = f"pw-{uuid.uuid4().hex}"
        _run(admin, "user", "create", "--password", password, f"cli-{team}-{tag}-dev")
        _quiet(admin, "role", "add", "--project", project["id"], "--user",
               f"cli-{team}-{tag}-dev", "member")  # fmt: skip
        user = _env(
            admin,
            OS_USERNAME=f"cli-{team}-{tag}-dev",
            OS_PASSWORD=password,
            OS_PROJECT_NAME=project["name"],
        )
        teams[team] = (project["id"], user)
    assigned = _run(admin, "role", "assignment", "list", "--names", "--project", teams["a"][0])
    assert [a["Role"] for a in assigned] == ["member"]
    try:
        made = {}
        for team, (_project, user) in teams.items():
            made[team] = _run(
                user, "database", "instance", "create", f"cli-{team}", "--flavor", "1",
                "--size", "1", "--datastore", "postgresql", "--datastore-version", "15",
                "--databases", "app", "--users", f"dev:dev-pass-{team}",
            )["id"]  # fmt: skip
        for team, (_project, user) in teams.items():
            listed = _run(user, "database", "instance", "list")
            assert [i["ID"] for i in listed] == [made[team]]
            _wait_active(user, made[team])
            assert "app" in [d["Name"] for d in _run(user, "database", "db", "list", made[team])]
            users = _run(user, "database", "user", "list", made[team])
            assert "dev" in [u["Name"] for u in users]
        other = subprocess.run(
            [OPENSTACK, "database", "instance", "show", made["a"]],
            env=teams["b"][1], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode != 0  # team b cannot see team a's instance
        _stock_commands(teams["a"][1], made["a"])
        for team, (_project, user) in teams.items():
            _quiet(user, "database", "instance", "delete", made[team])
        for team, (_project, user) in teams.items():
            _wait_gone(user, made[team])
    finally:
        for project, _user in teams.values():
            remove_leftovers(project)
    for project, _user in teams.values():
        assert not leftovers(project)


def _keys(row: dict[str, Any]) -> dict[str, Any]:
    return {k.lower().replace(" ", "_"): v for k, v in row.items()}


def _stock_commands(env: dict[str, str], instance: str) -> None:
    """``root disable``, ``configuration default``, ``backup strategy`` with Trove's body,
    and ``log list/show/set`` (publish, and enable refused: the engine's logs are SYS)."""
    assert _keys(_run(env, "database", "root", "enable", instance))["name"] == "postgres"
    _quiet(env, "database", "root", "disable", instance)
    running = _run(env, "database", "configuration", "default", instance)
    assert int(running["max_connections"]) >= 10
    made = _keys(_run(env, "database", "backup", "strategy", "create", "--instance-id",
                      instance, "--swift-container", "cli-team"))  # fmt: skip
    assert (made["instance_id"], made["swift_container"]) == (instance, "cli-team")
    listed = _run(env, "database", "backup", "strategy", "list", "--instance-id", instance)
    assert [_keys(row)["swift_container"] for row in listed] == ["cli-team"]
    _quiet(env, "database", "backup", "strategy", "delete", "--instance-id", instance)
    assert _run(env, "database", "backup", "strategy", "list", "--instance-id", instance) == []
    logs = {
        _keys(row)["name"]: _keys(row) for row in _run(env, "database", "log", "list", instance)
    }
    assert logs["postgresql"]["type"] == "SYS"
    published = _keys(_run(env, "database", "log", "set", instance, "postgresql", "--publish"))
    assert int(published["published"]) >= int(logs["postgresql"]["pending"]) > 0  # it grows
    shown = _keys(_run(env, "database", "log", "show", instance, "postgresql"))
    assert shown["metafile"] == published["metafile"]
    refused = subprocess.run(
        [OPENSTACK, "database", "log", "set", instance, "postgresql", "--enable"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "system log" in refused.stderr, refused.stderr


def _wait_active(env: dict[str, str], instance: str, within: float = 180) -> None:
    end = time.monotonic() + within
    shown: dict[str, Any] = {}
    while time.monotonic() < end:
        shown = {row["Field"]: row["Value"] for row in _table(env, instance)}
        if shown.get("status") == "ACTIVE":
            return
        assert shown.get("status") != "ERROR", shown
        time.sleep(1)
    raise AssertionError(f"instance {instance} not ACTIVE: {shown}")


def _table(env: dict[str, str], instance: str) -> list[dict[str, Any]]:
    shown = _run(env, "database", "instance", "show", instance)
    return [{"Field": k, "Value": v} for k, v in shown.items()]


def _wait_gone(env: dict[str, str], instance: str, within: float = 120) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if instance not in [i["ID"] for i in _run(env, "database", "instance", "list")]:
            return
        time.sleep(1)
    raise AssertionError(f"instance {instance} still listed after {within} s")
