"""The one supervisor of every engine's server, run here on small Python programs."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import SetupTool
from guestagent.errors import EngineError
from tests.unit.guestagent.support import SLEEPER, STUBBORN, Sleeper


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Sleeper]:
    process = Sleeper(tmp_path)
    try:
        yield process
    finally:
        process.stop(timeout=1.0)


def test_start_runs_the_server_until_stop_and_relays_its_output(sleeper: Sleeper) -> None:
    sleeper.start()

    assert sleeper.running()
    assert sleeper.unexpected_exit() is None
    sleeper.stop()
    assert not sleeper.running()
    assert sleeper.unexpected_exit() is None
    assert sleeper.recent_log() == ["sleeping"]
    assert sleeper.log_file is not None
    assert sleeper.log_file.tail(10) == ["sleeping"]


def test_a_server_that_dies_reports_why_and_starts_again(sleeper: Sleeper) -> None:
    sleeper.start()
    child = sleeper._child
    assert child is not None
    child.kill()
    child.wait(timeout=5)

    assert not sleeper.running()
    assert sleeper.unexpected_exit() == "sleepy exited with code -9: sleeping"

    sleeper.start()
    assert sleeper.running()
    assert sleeper.unexpected_exit() is None


def test_a_server_that_never_answers_fails_its_start_past_the_timeout(sleeper: Sleeper) -> None:
    sleeper.ready = False

    with pytest.raises(EngineError, match="sleepy did not accept connections in time: not yet"):
        sleeper.start(timeout=0.2)
    assert sleeper.probes > 1
    assert sleeper.running()  # left running: the caller decides


def test_a_server_that_exits_while_starting_fails_its_start(tmp_path: Path) -> None:
    quitter = Sleeper(tmp_path, "import sys; print('bad option'); sys.exit(3)")
    quitter.ready = False

    with pytest.raises(EngineError, match="sleepy exited with code 3"):
        quitter.start()


def test_stop_escalates_to_the_next_signal_when_one_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn = Sleeper(tmp_path, STUBBORN)
    stubborn.start()  # its handler is in place: it has printed its line

    with caplog.at_level(logging.WARNING):
        stubborn.stop(timeout=0.2)

    assert not stubborn.running()
    assert "ignored SIGTERM" in caplog.text
    assert stubborn.unexpected_exit() is None


def test_a_server_left_by_an_earlier_agent_is_found_by_its_pid_file(
    sleeper: Sleeper, tmp_path: Path
) -> None:
    sleeper.start()
    child = sleeper._child
    assert child is not None
    sleeper.pid_file.write_text(f"{child.pid}\n")
    reaper = threading.Thread(target=child.wait, daemon=True)  # as init would reap it
    reaper.start()

    later = Sleeper(tmp_path)
    assert later.running()
    later.stop()
    reaper.join(timeout=10)  # poll() says "running" while another thread is in wait()
    assert not sleeper.running()


def test_a_setup_tool_that_fails_quotes_the_end_of_its_output(tmp_path: Path) -> None:
    tool = SetupTool("maker", OsUser(), error_tag="[ERROR]")
    script = "print('one'); print('[ERROR] two'); print('three'); raise SystemExit(2)"
    tool.start([sys.executable, "-c", script], tmp_path)
    assert tool.pending()

    with pytest.raises(EngineError, match=r"maker failed \(exit 2\): \[ERROR\] two$"):
        tool.finish()
    assert not tool.pending()


def test_a_cancelled_setup_tool_is_no_longer_pending(tmp_path: Path) -> None:
    tool = SetupTool("maker", OsUser())
    tool.start([sys.executable, "-c", SLEEPER], tmp_path)

    tool.cancel()

    assert not tool.pending()
    tool.finish()  # nothing left to wait for
