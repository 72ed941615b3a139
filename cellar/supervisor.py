"""Keep a few child processes running: each one that dies is started again after a back-off.

``cellar serve`` runs the API, the worker and beat under one ``Supervisor``. Use it for any
fixed set of commands that should run in the foreground until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TextIO

logger = logging.getLogger(__name__)

STOP_GRACE = 15.0  # seconds between SIGTERM and SIGKILL when stopping


@dataclasses.dataclass(frozen=True)
class Backoff:
    """How long to wait before starting again a child that died.

    The first wait is ``first``. It doubles, up to ``limit``, each time the child dies
    again within ``stable_after`` seconds of its start. Once the child has stayed up
    that long, the next wait is ``first`` again.
    """

    first: float = 1.0
    limit: float = 30.0
    stable_after: float = 60.0

    def delay(self, previous: float | None, uptime: float) -> float:
        """The wait after a death, given the previous wait (None if none) and the uptime."""
        if previous is None or uptime >= self.stable_after:
            return self.first
        return min(previous * 2, self.limit)


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``exited with signal 9 (SIGKILL)``, from a Popen code."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"exited with signal {-returncode}"
    return f"exited with signal {-returncode} ({name})"


@dataclasses.dataclass
class Child:
    """One supervised command: its process while it runs, and when to start it again."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    last_delay: float | None = None
    restart_at: float | None = None


class Supervisor:
    """Run ``commands`` (name to argv) and start again each one that exits, until stopped.

    Call ``start()``, then ``keep_running()`` (or ``watch_once()`` in a loop of your own),
    then ``stop()``. Each event is printed on ``console`` (stderr by default) as a
    ``cellar: ...`` line; ``watch_once()`` and ``stop()`` also return those sentences.
    """

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        env: Mapping[str, str] | None = None,
        backoff: Backoff = Backoff(),
        grace: float = STOP_GRACE,
        console: TextIO | None = None,
        poll_every: float = 0.2,
    ) -> None:
        self.children = {name: Child(name, list(argv)) for name, argv in commands.items()}
        self.env = None if env is None else dict(env)
        self.backoff = backoff
        self.grace = grace
        self.console = console
        self.poll_every = poll_every
        self.stop_requested = False
        self.stopping = False

    def start(self) -> None:
        """Start every child; call it once, first."""
        for child in self.children.values():
            process = self._spawn(child)
            self._say(f"started {child.name} (pid {process.pid})")

    def pid(self, name: str) -> int | None:
        """The pid of child ``name`` while it runs; None while it is down."""
        process = self.children[name].process
        return process.pid if process is not None and process.poll() is None else None

    def watch_once(self) -> list[str]:
        """Notice the children that exited and start again those whose wait is over.

        Returns what it did, in the words it printed. Does nothing once a stop is asked.
        """
        said: list[str] = []
        if self.stop_requested or self.stopping:
            return said
        now = time.monotonic()
        for child in self.children.values():
            if child.process is not None and child.process.poll() is not None:
                said.append(self._exited(child, now))
            elif child.restart_at is not None and now >= child.restart_at:
                said.append(self._start_again(child))
        return said

    def keep_running(self) -> None:
        """Watch the children until a stop is requested (a signal or ``request_stop()``)."""
        while not self.stop_requested:
            self.watch_once()
            time.sleep(self.poll_every)

    def request_stop(self) -> None:
        """Make ``keep_running()`` return; safe to call from a signal handler."""
        self.stop_requested = True

    def stop_on_signals(self) -> None:
        """Make SIGTERM and SIGINT (Ctrl-C) request a stop; call it from the main thread."""

        def _on_signal(_signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    def stop(self) -> list[str]:
        """Stop every child: SIGTERM, then SIGKILL for those still up after the grace period.

        No child is started again afterwards.
        """
        self.stopping = True
        said: list[str] = []
        running = [
            (child, child.process)
            for child in self.children.values()
            if child.process is not None and child.process.poll() is None
        ]
        for _child, process in running:
            process.terminate()
        end = time.monotonic() + self.grace
        for child, process in running:
            try:
                process.wait(timeout=max(end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                said.append(
                    self._say(
                        f"{child.name} (pid {process.pid}) did not stop within "
                        f"{self.grace:g} s; killing it"
                    )
                )
                process.kill()
                process.wait()
        for child in self.children.values():
            child.restart_at = None
        return said

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        logger.debug("starting %s: %s", child.name, child.argv)
        process = subprocess.Popen(child.argv, env=self.env)
        child.process = process
        child.started_at = time.monotonic()
        child.restart_at = None
        return process

    def _exited(self, child: Child, now: float) -> str:
        assert child.process is not None and child.process.returncode is not None
        pid, code = child.process.pid, child.process.returncode
        child.process = None
        delay = self._schedule(child, now, uptime=now - child.started_at)
        return self._say(
            f"{child.name} (pid {pid}) {describe_exit(code)}; starting it again in {delay:g} s"
        )

    def _start_again(self, child: Child) -> str:
        try:
            process = self._spawn(child)
        except OSError as exc:
            now = time.monotonic()
            delay = self._schedule(child, now, uptime=0.0)
            return self._say(f"could not start {child.name} again ({exc}); next try in {delay:g} s")
        return self._say(f"{child.name} started again (pid {process.pid})")

    def _schedule(self, child: Child, now: float, uptime: float) -> float:
        delay = self.backoff.delay(child.last_delay, uptime)
        child.last_delay = delay
        child.restart_at = now + delay
        return delay

    def _say(self, sentence: str) -> str:
        print(f"cellar: {sentence}", file=self.console or sys.stderr, flush=True)
        return sentence
