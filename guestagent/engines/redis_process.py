"""The Redis server process of one data directory: start, wait until ready, stop.

Use :class:`RedisProcess` for everything that touches redis-server as a process; commands
go through ``redis_admin``. The server is the agent's child, run as the engine's OS user in
its own session (see ``server_process``); it logs to its standard output, which is relayed
to the agent's log and to a :class:`LogFile`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from guestagent.engines.os_user import OsUser
from guestagent.engines.server_process import ServerProcess
from guestagent.errors import EngineError
from guestagent.logfile import LogFile

logger = logging.getLogger(__name__)

FIRST_POLL = 0.002  # redis-server is usually ready within milliseconds
POLL_EVERY = 0.02


class RedisProcess(ServerProcess):
    """Starts and stops redis-server with ``config_file`` and tells whether it runs.

    ``ping`` raises EngineError while the server is not ready; ``shutdown`` sends Redis's
    SHUTDOWN command (raising EngineError if it failed), tried before any signal.
    """

    name = "redis"
    program = "redis"
    command_names = ("redis-server",)
    first_poll = FIRST_POLL
    poll_every = POLL_EVERY
    umask = 0o077  # its data, snapshots and ACL file are private

    def __init__(
        self,
        binary: Path,
        config_file: Path,
        pid_file: Path,
        owner: OsUser,
        ping: Callable[[], None],
        shutdown: Callable[[], None],
        start_timeout: float = 30.0,
        log_file: LogFile | None = None,
    ) -> None:
        super().__init__(pid_file, owner, start_timeout, log_file)
        self.binary = binary
        self.config_file = config_file
        self.ping = ping
        self.shutdown = shutdown

    def _command(self) -> list[str]:
        return [str(self.binary), str(self.config_file)]

    def _probe(self) -> str | None:
        try:
            self.ping()
        except EngineError as exc:
            return exc.message
        return None

    def _ask_to_exit(self, pid: int, timeout: float) -> bool:
        try:
            self.shutdown()
        except EngineError as exc:
            logger.warning("SHUTDOWN failed (%s): sending SIGTERM", exc.message)
            return False
        return self._wait_gone(pid, timeout)
