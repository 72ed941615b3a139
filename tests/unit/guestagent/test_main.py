"""``python -m guestagent`` as the container runs it: JSON logs, SIGTERM, exit code 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from guestagent.__main__ import parse_args
from tests.unit.guestagent.support import free_port
from tests.unit.guestagent.tls import INSTANCE, make_tls

REPO = Path(__file__).resolve().parents[3]


def test_defaults_match_the_image() -> None:
    args = parse_args(["--engine", "postgresql"])

    assert (args.port, args.data_dir) == (50051, Path("/var/lib/cellar/data"))


def test_unknown_engine_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--engine", "oracle"])
    assert "invalid choice" in capsys.readouterr().err


def test_agent_process_serves_then_exits_zero_on_sigterm(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    port = free_port()
    argv = [sys.executable, "-m", "guestagent", "--engine", "postgresql", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--data-dir", str(tmp_path / "data")]
    argv += ["--tls-dir", str(tls.folder)]
    env = dict(os.environ, PYTHONPATH=str(REPO), CELLAR_INSTANCE_ID=INSTANCE)
    agent = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        with tls.channel(port) as channel:
            stub = agent_pb2_grpc.GuestAgentStub(channel)
            deadline = time.monotonic() + 20
            while True:
                try:
                    reply = stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "the agent never answered"
                    time.sleep(0.1)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListDatabases(
                    agent_pb2.ListDatabasesRequest(),
                    timeout=5,
                    metadata=(("x-request-id", "req-main-7"),),
                )
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()

    assert reply.status == agent_pb2.NEW
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert agent.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines()]
    failure = next(e for e in lines if e["msg"].startswith("ListDatabases failed"))
    assert (failure["service"], failure["request_id"], failure["level"]) == (
        "guestagent",
        "req-main-7",
        "WARNING",
    )
    assert "FAILED_PRECONDITION" in failure["msg"]
    assert any(e["msg"] == "received SIGTERM: shutting down" for e in lines)
    assert lines[-1]["msg"] == "guest agent stopped"


def test_the_agent_limits_its_malloc_arenas_through_glibc() -> None:
    # run in a child: the setting lasts for the life of the process that takes it
    code = "from guestagent.__main__ import limit_malloc_arenas; print(limit_malloc_arenas())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "True"
