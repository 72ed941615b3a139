"""Where backups are kept: one file per backup, written once, checked when read.

Use :class:`LocalStorage` through :meth:`LocalStorage.writer` (bytes in, size and SHA-256
out; the file appears only when complete, so a crash leaves no half backup under its
name) and :meth:`LocalStorage.reader` (bytes out in pieces). Nothing here holds a whole
backup in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cellar.errors import CellarError

logger = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
KEY = re.compile(r"[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,3}")


class StorageError(CellarError):
    """The backup storage could not keep or give back a backup."""


class BackupMissing(StorageError):
    """No backup file under that key."""


@dataclasses.dataclass
class Written:
    """What a finished writer recorded."""

    size: int = 0
    checksum: str = ""


class BackupWriter:
    """Takes a backup's bytes; ``written`` is filled when the ``with`` block ends well."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.written = Written()

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self._digest.update(data)
        self.written.size += len(data)

    def _finish(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.written.checksum = self._digest.hexdigest()


class LocalStorage:
    """Backups as files under ``root`` (``CELLAR_BACKUP_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not KEY.fullmatch(key) or ".." in key:
            raise StorageError(f"not a backup key: {key!r}")
        return self.root / key

    def location(self, key: str) -> str:
        return f"file://{self.path(key)}"

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BackupWriter]:
        """Write ``key`` anew; the file replaces any earlier one only when complete."""
        final = self.path(key)
        scratch = final.with_name(final.name + ".partial")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            handle = open(scratch, "wb")
        except OSError as exc:
            raise StorageError(f"cannot write backup {key}: {exc.strerror or exc}") from exc
        try:
            with handle:
                writer = BackupWriter(handle)
                yield writer
                writer._finish()
            os.replace(scratch, final)
        except OSError as exc:
            scratch.unlink(missing_ok=True)
            raise StorageError(f"cannot write backup {key}: {exc.strerror or exc}") from exc
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        logger.info("stored backup %s (%d bytes)", key, writer.written.size)

    def reader(self, key: str) -> Iterator[bytes]:
        """The bytes of ``key`` in pieces of at most ``READ_BYTES``."""
        try:
            handle = open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise BackupMissing(f"the backup file {key} is missing from storage") from exc
        except OSError as exc:
            raise StorageError(f"cannot read backup {key}: {exc.strerror or exc}") from exc
        with handle:
            while block := handle.read(READ_BYTES):
                yield block

    def checksum(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of what is stored under ``key`` now."""
        digest = hashlib.sha256()
        size = 0
        for block in self.reader(key):
            digest.update(block)
            size += len(block)
        return size, digest.hexdigest()

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was already gone."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete backup {key}: {exc.strerror or exc}") from exc
        return True
