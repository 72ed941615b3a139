"""The crash tests' stack: API, beat and a worker that a fault kills, started again at once.

The worker runs with ``CELLAR_FAULT_FILE`` pointing at a file of this stack's home: the
harness writes one ``<workflow>:<step>:<before|during>`` line there, the worker kills
itself with SIGKILL at that point (and removes the line), and the harness starts a new
worker at once, as ``cellar serve`` would, and notes when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cellar import settings as settings_module
from cellar.db import Database
from cellar.settings import Settings
from tests.integration.identity import Identity
from tests.integration.stack import Stack, start_stack

POLL = 0.05


class ChaosStack:
    def __init__(
        self, home: Path, extra_env: dict[str, str] | None = None, identity: Identity | None = None
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.fault = home / "fault"
        self.stack: Stack = start_stack(
            home, {"CELLAR_FAULT_FILE": str(self.fault), **(extra_env or {})}, identity
        )
        self.settings: Settings = settings_module.load()
        self.db = Database(self.settings.database_url)
        self.deaths = 0

    @property
    def url(self) -> str:
        return self.stack.url

    def arm(self, workflow: str, step: str, when: str) -> None:
        partial = self.fault.with_name("fault.new")
        partial.write_text(f"{workflow}:{step}:{when}\n")
        partial.replace(self.fault)

    def disarm(self) -> None:
        self.fault.unlink(missing_ok=True)

    def worker_died(self) -> bool:
        return self.stack.processes["worker"].poll() is not None

    def wait_for_death(self, within: float, give_up: Callable[[], bool]) -> bool:
        """True once the worker died; False after ``within`` s or once ``give_up()``."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.worker_died():
                return True
            if give_up():
                return self.worker_died()
            time.sleep(POLL)
        return self.worker_died()

    def restart_worker(self) -> float:
        """Start a new worker for the dead one; when it was started (``time.monotonic``)."""
        code = self.stack.reap("worker")
        if code is None:
            raise RuntimeError("the worker is still running; nothing to start again")
        self.deaths += 1
        self.stack.start("worker")
        return time.monotonic()

    def keep_worker(self) -> None:
        """Start the worker again if it died outside a cell (a fault fired late)."""
        if self.worker_died():
            self.restart_worker()

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.stack.log_text(name).splitlines()[-lines:])

    def stop(self) -> None:
        self.disarm()
        self.stack.stop()
        self.db.engine.dispose()
