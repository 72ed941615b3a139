"""What every engine's server process needs alike: its output relayed, signals, exit checks.

The ``*_process`` modules of the engines start their servers as children of the agent;
they use these helpers for the parts that do not depend on the engine.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

POLL_EVERY = 0.05


def relay_lines(
    stream: IO[bytes], label: str, tail: collections.deque[str], log_file: LogFile | None
) -> None:
    """Copy a server's output, line by line, into the agent's log, ``tail`` and ``log_file``."""
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)
            logger.info("%s: %s", label, line)
            if log_file is not None:
                log_file.append(line)
    stream.close()


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid``; a process already gone is no error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def looks_like(pid: int, names: tuple[str, ...]) -> bool:
    """True if ``pid`` is a live process whose command name starts with one of ``names``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc/self/comm").exists():
        return True
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return comm.startswith(names)


def wait_gone(
    child: subprocess.Popen[bytes] | None, pid: int, within: float, alive: Callable[[int], bool]
) -> bool:
    """Wait up to ``within`` seconds for ``pid`` to end (reaping it if it is ``child``)."""
    if child is not None and child.pid == pid:
        try:
            child.wait(timeout=within)
        except subprocess.TimeoutExpired:
            return False
        return True
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(POLL_EVERY)
    return False
