"""An engine's log kept as a file in its data volume: appended, rotated, read from the end.

Use :class:`LogFile` for each log an engine exposes through the ListLogs and
TailLog calls; reading the tail never loads the whole file. The log's folder is in the
engine's data directory, where the engine's user can plant links: the agent writes,
rotates and reads it through ``safe_files`` and never follows one. A log refused that
way loses its lines (they are still in the agent's own log); it is tried again once a
minute, so a planted link costs one warning a minute, not one per line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from guestagent import safe_files
from guestagent.errors import UnsafePath

logger = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024
READ_BLOCK = 64 * 1024
RETRY_REFUSED = 60.0  # seconds between attempts at a refused log


class LogFile:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._retry_at = 0.0  # after a refusal, lines are dropped until then

    @property
    def rotated(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def append(self, line: str) -> None:
        """Add one line; past ``max_bytes`` the file moves to ``<name>.1`` (one kept)."""
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        with self._lock:
            if time.monotonic() < self._retry_at:
                return
            try:
                self._append(data)
            except UnsafePath as exc:
                logger.warning("engine log lines are dropped for a while: %s", exc.message)
                self._retry_at = time.monotonic() + RETRY_REFUSED

    def _append(self, data: bytes) -> None:
        safe_files.make_dir(self.path.parent)
        try:
            if self.path.lstat().st_size + len(data) > self.max_bytes:
                safe_files.move(self.path, self.rotated)
        except FileNotFoundError:
            pass
        with safe_files.append_to(self.path) as handle:
            handle.write(data)

    def size(self) -> int:
        try:
            return self.path.lstat().st_size
        except FileNotFoundError:
            return 0

    def read_from(self, offset: int) -> Iterator[bytes]:
        """The file's bytes from ``offset`` to its end as it is now, in ``READ_BLOCK`` pieces.

        Lines appended while reading are left for the next call; a file rotated meanwhile
        is read to the end of what the open handle holds.
        """
        try:
            handle = safe_files.open_reading(self.path)
        except FileNotFoundError:
            return
        with handle:
            end = handle.seek(0, os.SEEK_END)
            handle.seek(min(offset, end))
            left = end - handle.tell()
            while left > 0:
                data = handle.read(min(READ_BLOCK, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines (fewer if the log is shorter)."""
        if lines <= 0:
            return []
        try:
            handle = safe_files.open_reading(self.path)
        except FileNotFoundError:
            return []
        with handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            position = end
            while position > 0 and data.count(b"\n") <= lines:
                step = min(READ_BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
        text = data.decode("utf-8", "replace").splitlines()
        return text[-lines:]
