"""An engine's log kept as a file in its data volume: appended, rotated, read from the end.

Use :class:`LogFile` for each log an engine exposes through the ListLogs and
TailLog calls; reading the tail never loads the whole file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
READ_BLOCK = 64 * 1024


class LogFile:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @property
    def rotated(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def append(self, line: str) -> None:
        """Add one line; past ``max_bytes`` the file moves to ``<name>.1`` (one kept)."""
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size + len(data) > self.max_bytes:
                    os.replace(self.path, self.rotated)
            except FileNotFoundError:
                pass
            with open(self.path, "ab") as handle:
                handle.write(data)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines (fewer if the log is shorter)."""
        if lines <= 0:
            return []
        try:
            handle = open(self.path, "rb")
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
