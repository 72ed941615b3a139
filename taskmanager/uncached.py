"""Large files written and read without filling the host's page cache.

Use :class:`DropBehindFile` to write a backup and :func:`read_dropping` to read one. A
backup is written once and read rarely; left in the page cache, each one would push
the engines' own pages out, and on a busy host the kernel spends more time finding
free pages for the next backup than copying its bytes. Here every ``WINDOW`` bytes
are flushed to disk and dropped from the cache as soon as they are written (or read),
so the cache holds at most one window of a backup, and the closing ``fsync`` has
little left to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

WINDOW = 32 * 1024 * 1024


class DropBehindFile:
    """A new file open for writing; flushed and dropped from the cache window by window."""

    def __init__(self, path: str | os.PathLike[str], window: int = WINDOW) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.fd = os.open(path, flags, 0o600)
        self.window = window
        self.size = 0
        self._kept = 0  # bytes before this offset are on disk and out of the cache

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
            self.size += done
        if self.size - self._kept >= self.window:
            self._drop_written()
        return len(data)

    def _drop_written(self) -> None:
        os.fdatasync(self.fd)
        os.posix_fadvise(self.fd, self._kept, self.size - self._kept, os.POSIX_FADV_DONTNEED)
        self._kept = self.size

    def sync(self) -> None:
        """Everything written is on disk (and out of the cache)."""
        os.fsync(self.fd)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self._kept = self.size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> DropBehindFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_dropping(fd: int, size: int, window: int = WINDOW) -> Iterator[bytes]:
    """The bytes of the open file ``fd`` in pieces of at most ``size``, each window of the
    file dropped from the cache once it has been read."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    offset = dropped = 0
    while block := os.read(fd, size):
        offset += len(block)
        if offset - dropped >= window:
            os.posix_fadvise(fd, dropped, offset - dropped, os.POSIX_FADV_DONTNEED)
            dropped = offset
        yield block
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
