from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cellar import logs
from cellar import settings as settings_module
from cellar.serve import METRICS_DIR, commands, empty_metrics_dir, wait_for_api
from cellar.supervisor import Backoff, Supervisor, describe_exit

ROOT = Path(__file__).resolve().parents[3]
SLEEPS = [sys.executable, "-c", "import time; time.sleep(60)"]
EXITS = [sys.executable, "-c", "raise SystemExit(3)"]
QUICK = Backoff(first=0.05, limit=0.2)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def watch_until(
    supervisor: Supervisor, done: Callable[[], bool], within: float = 10.0
) -> list[str]:
    """Run ``watch_once()`` until ``done()``; what the supervisor said meanwhile."""
    said: list[str] = []
    end = time.monotonic() + within
    while not done():
        assert time.monotonic() < end, f"not done after {within} s; the supervisor said {said}"
        said += supervisor.watch_once()
        time.sleep(0.01)
    return said


@pytest.fixture
def supervisors() -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(commands: dict[str, list[str]], **kwargs: Any) -> Supervisor:
        kwargs.setdefault("console", io.StringIO())
        kwargs.setdefault("grace", 2.0)
        supervisor = Supervisor(commands, **kwargs)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop()


def test_backoff_doubles_up_to_its_limit_and_starts_over_after_a_long_run() -> None:
    backoff = Backoff(first=1.0, limit=30.0, stable_after=60.0)
    delays: list[float] = []
    previous = None
    for _ in range(8):
        previous = backoff.delay(previous, uptime=0.5)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(30.0, uptime=61.0) == 1.0


def test_exits_are_told_by_status_or_by_signal() -> None:
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "exited with signal 9 (SIGKILL)"
    assert describe_exit(-200) == "exited with signal 200"


def test_a_child_killed_with_sigkill_is_started_again(
    supervisors: Callable[..., Supervisor],
) -> None:
    console = io.StringIO()
    supervisor = supervisors({"worker": SLEEPS, "beat": SLEEPS}, backoff=QUICK, console=console)
    supervisor.start()
    first, beat = supervisor.pid("worker"), supervisor.pid("beat")
    assert first is not None and beat is not None

    os.kill(first, signal.SIGKILL)
    said = watch_until(supervisor, lambda: supervisor.pid("worker") not in (None, first))

    again = supervisor.pid("worker")
    assert said == [
        f"worker (pid {first}) exited with signal 9 (SIGKILL); starting it again in 0.05 s",
        f"worker started again (pid {again})",
    ]
    assert supervisor.pid("beat") == beat
    assert console.getvalue().splitlines()[-2:] == [f"cellar: {line}" for line in said]


def test_a_child_that_keeps_dying_waits_longer_each_time_up_to_a_limit(
    supervisors: Callable[..., Supervisor],
) -> None:
    backoff = Backoff(first=0.01, limit=0.04, stable_after=60.0)
    supervisor = supervisors({"api": EXITS}, backoff=backoff)
    supervisor.start()
    said: list[str] = []

    def five_deaths() -> bool:
        return sum("starting it again" in line for line in said) >= 5

    end = time.monotonic() + 15
    while not five_deaths():
        assert time.monotonic() < end, said
        said += supervisor.watch_once()
        time.sleep(0.005)

    deaths = [line for line in said if "starting it again" in line]
    assert all("exited with status 3" in line for line in deaths)
    delays = [float(re.findall(r"again in ([\d.]+) s", line)[0]) for line in deaths]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_stop_kills_a_child_that_ignores_sigterm_and_starts_nothing_again(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    ready = tmp_path / "ready"
    stubborn = [
        sys.executable,
        "-c",
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)",
        str(ready),
    ]
    supervisor = supervisors(
        {"polite": SLEEPS, "stubborn": stubborn}, backoff=Backoff(first=0.01), grace=0.5
    )
    supervisor.start()
    pids = [supervisor.pid("polite"), supervisor.pid("stubborn")]
    end = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < end
        time.sleep(0.01)

    started = time.monotonic()
    said = supervisor.stop()

    assert time.monotonic() - started < 10
    assert said == [f"stubborn (pid {pids[1]}) did not stop within 0.5 s; killing it"]
    assert not [pid for pid in pids if pid is not None and alive(pid)]
    assert supervisor.watch_once() == []
    assert supervisor.pid("polite") is None and supervisor.pid("stubborn") is None


SUPERVISED = """
import sys
from cellar.supervisor import Backoff, Supervisor

sleeps = [sys.executable, "-c", "import time; time.sleep(60)"]
supervisor = Supervisor({"api": sleeps, "worker": sleeps}, backoff=Backoff(first=0.01), grace=5)
supervisor.stop_on_signals()
supervisor.start()
try:
    supervisor.keep_running()
finally:
    supervisor.stop()
print("cellar: stopped", file=sys.stderr, flush=True)
"""
STARTED = re.compile(r"started \w+ \(pid (\d+)\)")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_stops_every_child_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    console = tmp_path / "console"
    with console.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SUPERVISED], cwd=ROOT, stdout=out, stderr=out
        )
    pids: list[int] = []
    try:
        end = time.monotonic() + 20
        while len(pids) < 2:
            assert time.monotonic() < end, console.read_text()
            assert process.poll() is None, console.read_text()
            pids = [int(pid) for pid in STARTED.findall(console.read_text())]
            time.sleep(0.02)

        process.send_signal(signum)

        assert process.wait(timeout=20) == 0
        text = console.read_text()
        assert text.splitlines()[-1] == "cellar: stopped"
        assert "again" not in text
        assert not [pid for pid in pids if alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_wait_for_api_gives_up_at_once_when_the_api_exits(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors({"api": EXITS})
    supervisor.start()
    started = time.monotonic()

    assert not wait_for_api(supervisor, "http://127.0.0.1:9/", within=30)

    assert time.monotonic() - started < 20
    assert supervisor.watch_once()[0].startswith("api (pid ")


def test_wait_for_api_gives_up_when_a_stop_is_requested(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors({"api": SLEEPS})
    supervisor.start()
    supervisor.request_stop()

    assert not wait_for_api(supervisor, "http://127.0.0.1:9/", within=30)


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_beat_sends_due_tasks_at_debug_and_keeps_its_errors(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from celery import Celery, beat

    class BrokerDown(beat.Scheduler):
        def apply_async(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the broker is down")

    scheduler = BrokerDown(Celery("test-beat"), lazy=True, Producer=object)
    entry = SimpleNamespace(name="reconcile", task="cellar.reconcile")

    def beat_lines(level: int) -> list[tuple[str, str]]:
        logs.setup("taskmanager", level)
        scheduler.apply_entry(entry)
        records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        return [
            (record["level"], record["msg"].splitlines()[0])
            for record in records
            if record["logger"] == "celery.beat"
        ]

    assert beat_lines(logging.INFO) == [("ERROR", "Message Error: the broker is down")]
    assert ("DEBUG", "Scheduler: Sending due task reconcile (cellar.reconcile)") in beat_lines(
        logging.DEBUG
    )


def test_only_the_api_gets_a_fresh_prometheus_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "home"))
    settings = settings_module.load()
    folder = tmp_path / "home" / METRICS_DIR
    folder.mkdir(parents=True)
    (folder / "histogram_4242.db").write_bytes(b"from a run before")

    assert empty_metrics_dir(settings) == folder

    assert list(folder.iterdir()) == []
    assert folder.stat().st_mode & 0o777 == 0o700
    api = commands(settings)["api"]
    assert api[api.index("--env") + 1] == f"PROMETHEUS_MULTIPROC_DIR={folder}"
    assert api.index("--env") < api.index("api.app:main()")
    for other in ("worker", "beat"):
        assert not [arg for arg in commands(settings)[other] if "PROMETHEUS" in arg]
