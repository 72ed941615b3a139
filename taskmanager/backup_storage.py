"""Where backups are kept: one object per backup, written once, checked when read.

Every store follows :class:`BackupStorage`: :meth:`~BackupStorage.writer` (bytes in, size
and SHA-256 out; the backup appears only when complete, so a crash leaves no half backup
under its name) and :meth:`~BackupStorage.reader` (bytes out in pieces, and the
stored bytes into a digest). Nothing here holds a whole backup in memory.
:func:`storage_for` picks the store from the settings: :class:`LocalStorage` (a
directory, the default) or ``S3Storage`` (``backup_s3``, for
``CELLAR_BACKUP_URL=s3://bucket/prefix``), inside ``EncryptedStorage``
(``backup_crypto``), which encrypts what it writes unless ``CELLAR_BACKUP_ENCRYPTION``
is off, and decrypts what it reads.

    StorageError        the store could not keep or give back a backup
    ├── BackupMissing   no backup under that key
    └── BackupDamaged   the stored bytes fail their integrity check (changed, cut short,
                        or sealed by a key Cellar no longer has)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from cellar.errors import CellarError
from cellar.settings import Settings
from taskmanager.uncached import DropBehindFile, read_dropping

logger = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
STALE_SCRATCH = 600.0  # seconds after which a scratch file nobody writes is dropped
KEY = re.compile(r"[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,3}")


class StorageError(CellarError):
    """The backup storage could not keep or give back a backup."""


class BackupMissing(StorageError):
    """No backup under that key."""


class BackupDamaged(StorageError):
    """The stored bytes fail their integrity check: reading them again will not help."""


class Digest(Protocol):
    """What :meth:`BackupStorage.reader` feeds the stored bytes to (a ``hashlib`` hash)."""

    def update(self, data: bytes, /) -> None: ...


def check_key(key: str) -> str:
    """``key`` when it is a valid backup key (``project/backup``-like), else StorageError."""
    if not KEY.fullmatch(key) or ".." in key:
        raise StorageError(f"not a backup key: {key!r}")
    return key


@dataclasses.dataclass
class Written:
    """What a finished writer recorded."""

    size: int = 0
    checksum: str = ""


class BackupWriter:
    """Takes a backup's bytes; ``written`` is filled when the ``with`` block ends well.

    A store makes one around its ``sink`` (where the bytes go) and calls :meth:`seal`
    once every byte is safely kept.
    """

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink
        self._digest = hashlib.sha256()
        self.written = Written()

    def write(self, data: bytes) -> None:
        self._sink(data)
        self._digest.update(data)
        self.written.size += len(data)

    def seal(self) -> Written:
        self.written.checksum = self._digest.hexdigest()
        return self.written


def size_and_checksum(blocks: Iterable[bytes]) -> tuple[int, str]:
    """Size and SHA-256 of the bytes that ``blocks`` yields."""
    digest = hashlib.sha256()
    size = 0
    for block in blocks:
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def digested(blocks: Iterable[bytes], digest: Digest | None) -> Iterator[bytes]:
    """``blocks``, each also fed to ``digest`` when there is one."""
    if digest is None:
        yield from blocks
        return
    for block in blocks:
        digest.update(block)
        yield block


class BackupStorage(Protocol):
    """What the backup, restore and verify workflows need from a store."""

    def location(self, key: str) -> str:
        """Where ``key`` is kept, as a URL recorded on the backup."""
        ...

    def writer(
        self, key: str, attempt: str = "", before_publish: Callable[[], object] | None = None
    ) -> contextlib.AbstractContextManager[BackupWriter]:
        """Write ``key`` anew; it replaces any earlier one only when complete.

        The bytes go to a scratch object of this ``attempt`` alone (scratch objects of
        earlier attempts at the same key are dropped); ``before_publish`` runs just before
        the complete backup takes the key's name, and may raise to keep it from it.
        """
        ...

    def reader(self, key: str, digest: Digest | None = None) -> Iterator[bytes]:
        """The bytes of ``key`` in pieces of at most ``READ_BYTES``; BackupMissing if none.

        ``digest`` is fed the bytes as stored, which the checksum recorded on a backup
        covers (for an encrypted store they differ from the bytes given back).
        """
        ...

    def checksum(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of what is stored under ``key`` now."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was already gone."""
        ...


class LocalStorage:
    """Backups as files under ``root`` (``CELLAR_BACKUP_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def location(self, key: str) -> str:
        return f"file://{self.path(key)}"

    @contextlib.contextmanager
    def writer(
        self, key: str, attempt: str = "", before_publish: Callable[[], object] | None = None
    ) -> Iterator[BackupWriter]:
        """Write ``key`` anew; the file replaces any earlier one only when complete."""
        final = self.path(key)
        scratch = final.with_name(f"{final.name}.{attempt or secrets.token_hex(4)}.partial")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._drop_scratch(final, keep=scratch, fresh_too=bool(attempt))
            handle = DropBehindFile(scratch)
        except OSError as exc:
            raise StorageError(f"cannot write backup {key}: {exc.strerror or exc}") from exc
        try:
            with handle:
                writer = BackupWriter(handle.write)
                yield writer
                handle.sync()
                writer.seal()
            if before_publish is not None:
                before_publish()
            os.replace(scratch, final)
        except OSError as exc:
            scratch.unlink(missing_ok=True)
            raise StorageError(f"cannot write backup {key}: {exc.strerror or exc}") from exc
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        logger.info("stored backup %s (%d bytes)", key, writer.written.size)

    @staticmethod
    def _drop_scratch(final: Path, keep: Path | None = None, fresh_too: bool = True) -> None:
        """Remove the scratch files other writers left in ``final``'s folder: those of
        ``final`` itself (``fresh_too``: even one still written, whose writer then fails
        to publish it), and any left untouched for ``STALE_SCRATCH`` seconds."""
        stale = time.time() - STALE_SCRATCH
        for found in final.parent.glob("*.partial"):
            if found == keep:
                continue
            mine = fresh_too and found.name.startswith(f"{final.name}.")
            try:
                if mine or found.stat().st_mtime < stale:
                    found.unlink(missing_ok=True)
                    logger.info("removed the scratch file %s", found.name)
            except FileNotFoundError:
                continue

    def reader(self, key: str, digest: Digest | None = None) -> Iterator[bytes]:
        """The bytes of ``key`` in pieces of at most ``READ_BYTES`` (also fed to ``digest``)."""
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise BackupMissing(f"the backup file {key} is missing from storage") from exc
        except OSError as exc:
            raise StorageError(f"cannot read backup {key}: {exc.strerror or exc}") from exc
        try:
            yield from digested(read_dropping(fd, READ_BYTES), digest)
        except OSError as exc:
            raise StorageError(f"cannot read backup {key}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def checksum(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of what is stored under ``key`` now."""
        return size_and_checksum(self.reader(key))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (and scratch files of unfinished attempts); False when it was
        already gone."""
        try:
            self._drop_scratch(self.path(key))
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete backup {key}: {exc.strerror or exc}") from exc
        return True


def storage_for(settings: Settings) -> BackupStorage:
    """The store the settings name: S3 for ``CELLAR_BACKUP_URL=s3://...``, else local
    (as stored: ``backup_crypto.EncryptedStorage`` wraps it for the workflows)."""
    location = settings.backup_s3
    if location is None:
        return LocalStorage(settings.backups_dir)
    from taskmanager.backup_s3 import S3Storage, s3_client  # boto3 only when it is used

    bucket, prefix = location
    return S3Storage(bucket, prefix, s3_client(settings.s3_endpoint_url, settings.s3_region))
