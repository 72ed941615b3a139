"""An engine's server, run as the agent's child: start, wait until ready, signals, exit checks.

Subclass :class:`ServerProcess` once per engine (``postgres_process``, ``mariadb_process``,
``redis_process``) for what differs: the command line, how to tell the server answers,
which signals stop it. Use :class:`SetupTool` for the one-off program that readies a new
data directory (initdb, mariadb-install-db) in the background, :func:`run_tool` for a
program the agent waits for (a checker, a backup's preparation).
"""

from __future__ import annotations

import abc
import collections
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, ClassVar

from guestagent.engines.os_user import OsUser
from guestagent.errors import EngineError
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

POLL_EVERY = 0.05
LOG_TAIL = 20  # the server's last lines, for the reason of an unexpected exit
LATER_SIGNAL_WAIT = 5.0  # how long each stop signal after the first is given
RELAY_JOIN = 2.0


def spawn(owner: OsUser, argv: list[str], cwd: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Run ``argv`` as ``owner`` in ``cwd`` with no input, its stdout and stderr on one pipe."""
    return subprocess.Popen(
        owner.command(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        **options,
        **owner.popen_kwargs(),
    )


def run_tool(
    argv: list[str], name: str, timeout: float, **options: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to its end with no input; EngineError if it cannot run or runs past
    ``timeout`` seconds. ``name`` is the program, then what it was asked to do, if that
    tells the run apart (``mariabackup --prepare``)."""
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, timeout=timeout, check=False, **options
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{name} did not finish in time") from exc
    except OSError as exc:
        program = name.split(" ", 1)[0]
        raise EngineError(f"cannot run {program}: {exc.strerror or exc}") from exc


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


class SetupTool:
    """A one-off program that readies a new data directory, run in the background so it
    can overlap other work: :meth:`start` it, then :meth:`finish` (or :meth:`cancel`) it.

    Where ``error_tag`` is given, a failure quotes the output lines holding it (if any).
    """

    def __init__(self, name: str, owner: OsUser, error_tag: str = "") -> None:
        self.name = name
        self.owner = owner
        self.error_tag = error_tag
        self._child: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def start(self, argv: list[str], cwd: Path) -> None:
        self._started = time.monotonic()
        try:
            self._child = spawn(self.owner, argv, cwd)
        except OSError as exc:
            raise EngineError(f"cannot run {self.name}: {exc.strerror or exc}") from exc

    def pending(self) -> bool:
        return self._child is not None

    def finish(self) -> None:
        """Wait for the tool; raise EngineError if it failed."""
        child, self._child = self._child, None
        if child is None:
            return
        output, _ = child.communicate()
        if child.returncode != 0:
            lines = output.decode("utf-8", "replace").strip().splitlines()
            shown = [line for line in lines if self.error_tag in line] or lines
            raise EngineError(
                f"{self.name} failed (exit {child.returncode}): {' | '.join(shown[-3:])}"
            )
        logger.info("%s done in %.0f ms", self.name, (time.monotonic() - self._started) * 1000)

    def cancel(self) -> None:
        """Kill the tool (what it was making is about to be replaced)."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
            logger.info("cancelled the early %s (pid %d)", self.name, child.pid)
        child.communicate()


class ServerProcess(abc.ABC):
    """Starts and stops one engine's server and tells whether it runs.

    The server runs as the engine's OS user in its own session, in the folder of its
    ``pid_file``; its output is relayed to the agent's log and to ``log_file``. A server
    the agent did not start (an earlier agent's) is found through ``pid_file``.
    """

    name: ClassVar[str]  # the server in the agent's log and in the engine's status
    program: ClassVar[str]  # the server in messages about its process
    command_names: ClassVar[tuple[str, ...]]  # how /proc names it; the first is the executable
    stop_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGTERM, signal.SIGKILL)
    stop_timeout: ClassVar[float] = 30.0  # how long the first stop signal is given
    first_poll: ClassVar[float] = POLL_EVERY  # the first pause between readiness probes,
    poll_every: ClassVar[float] = POLL_EVERY  # doubled each time up to this one
    umask: ClassVar[int] = -1  # the server's umask (-1: the agent's)

    def __init__(
        self,
        pid_file: Path,
        owner: OsUser,
        start_timeout: float,
        log_file: LogFile | None = None,
        port: int | None = None,
    ) -> None:
        self.pid_file = pid_file
        self.owner = owner
        self.start_timeout = start_timeout
        self.log_file = log_file
        self.port = port
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._stopped_on_purpose = False

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    @abc.abstractmethod
    def _probe(self) -> str | None:
        """None once the server answers, else why it does not (yet)."""

    def _check_startable(self) -> None:  # noqa: B027  (optional hook)
        """Raise if the server cannot start now (called before every start)."""

    def _before_spawn(self) -> None:  # noqa: B027  (optional hook)
        """Make what the server needs before it runs (its socket's folder, ...)."""

    def _ask_to_exit(self, pid: int, timeout: float) -> bool:
        """Ask the server to exit by other means than a signal; True once it has."""
        return False

    def running(self) -> bool:
        """True while a server of this data directory runs (ours, or an earlier agent's)."""
        if self._child is not None:
            return self._child.poll() is None
        return self._pid_from_file() is not None

    def unexpected_exit(self) -> str | None:
        """Why our server went away when nobody stopped it, else None."""
        child = self._child
        if child is None or self._stopped_on_purpose or child.poll() is None:
            return None
        last = self._tail[-1] if self._tail else "no log output"
        return f"{self.program} exited with code {child.returncode}: {last}"

    def recent_log(self) -> list[str]:
        """The server's last log lines (all of them once it has exited)."""
        child, relay = self._child, self._relay
        if child is not None and child.poll() is not None and relay is not None:
            relay.join(timeout=RELAY_JOIN)
        return list(self._tail)

    def start(self, timeout: float | None = None, overrides: tuple[str, ...] = ()) -> None:
        """Start the server unless it runs, and wait until it answers (``timeout`` seconds,
        the start timeout by default). ``overrides`` are settings for this run only."""
        with self._lock:
            self._check_startable()
            if not self.running():
                self._before_spawn()
                self._spawn(overrides)
        wait = self.start_timeout if timeout is None else timeout
        self.wait_until_ready(time.monotonic() + wait)

    def _spawn(self, overrides: tuple[str, ...]) -> None:
        self._tail.clear()
        self._stopped_on_purpose = False
        try:
            self._child = spawn(
                self.owner,
                [*self._command(), *overrides],
                self.pid_file.parent,
                start_new_session=True,
                umask=self.umask,
            )
        except OSError as exc:
            executable = self.command_names[0]
            raise EngineError(f"cannot run {executable}: {exc.strerror or exc}") from exc
        assert self._child.stdout is not None
        self._relay = threading.Thread(
            target=relay_lines,
            args=(self._child.stdout, self.name, self._tail, self.log_file),
            name=f"{self.name}-log",
            daemon=True,
        )
        self._relay.start()
        where = "" if self.port is None else f" on port {self.port}"
        logger.info("started %s (pid %d)%s", self.program, self._child.pid, where)

    def wait_until_ready(self, deadline: float) -> None:
        """Probe until the server answers; EngineError if it exits or past ``deadline``."""
        pause = self.first_poll
        while True:
            if not self.running():
                raise EngineError(
                    self.unexpected_exit() or f"{self.program} stopped while starting"
                )
            why = self._probe()
            if why is None:
                return
            if time.monotonic() >= deadline:
                raise EngineError(f"{self.program} did not accept connections in time: {why}")
            time.sleep(pause)
            pause = min(self.poll_every, pause * 2)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server cleanly, then harder past ``timeout`` (the stop timeout by
        default); a no-op when it does not run."""
        wait = self.stop_timeout if timeout is None else timeout
        with self._lock:
            self._stopped_on_purpose = True
            child = self._child
            pid = child.pid if child is not None else self._pid_from_file()
            if pid is None or (child is not None and child.poll() is not None):
                return
            started = time.monotonic()
            if not self._ask_to_exit(pid, wait):
                for sig in self.stop_signals:
                    send_signal(pid, sig)
                    if self._wait_gone(pid, wait):
                        break
                    logger.warning("%s (pid %d) ignored %s", self.program, pid, sig.name)
                    wait = LATER_SIGNAL_WAIT
            if self._relay is not None:
                self._relay.join(timeout=RELAY_JOIN)
            logger.info("stopped %s in %.0f ms", self.program, (time.monotonic() - started) * 1000)

    def _wait_gone(self, pid: int, within: float) -> bool:
        """Wait up to ``within`` seconds for ``pid`` to end (reaping it if it is our child)."""
        child = self._child
        if child is not None and child.pid == pid:
            try:
                child.wait(timeout=within)
            except subprocess.TimeoutExpired:
                return False
            return True
        end = time.monotonic() + within
        while time.monotonic() < end:
            if not self._is_ours(pid):
                return True
            time.sleep(POLL_EVERY)
        return False

    def _is_ours(self, pid: int) -> bool:
        """True if ``pid`` is a live process of this server's program."""
        return looks_like(pid, self.command_names)

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None
