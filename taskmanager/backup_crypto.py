"""Backups encrypted at rest: AES-256-GCM with a fresh data key for every stored object.

:class:`EncryptedStorage` wraps any :class:`~taskmanager.backup_storage.BackupStorage`.
Its writer seals the bytes it is given in chunks as they come, and its reader opens them
as they come, so no more than a chunk or two is ever held. Each object gets a new random
256-bit data key, kept in a ``data_keys`` row sealed by Cellar's key ring
(:class:`DataKeys`); the object names that row, so rotating Cellar's key seals the row
again and never rewrites the object (S3 objects cannot be edited). Deleting an object
deletes its data key too, so a copy left behind (an old S3 version, a disk block) can no
longer be read.

An encrypted object is a header, then the sealed chunks::

    magic       8 bytes   MAGIC
    version     1 byte    1
    chunk size  4 bytes   plain bytes per chunk (big-endian)
    data key   16 bytes   the ``data_keys`` row's UUID
    nonce       8 bytes   random prefix of every chunk's nonce
    chunk i     up to chunk size + 16 bytes: AES-GCM of the plain bytes, its tag last

Chunk ``i`` is sealed with the nonce ``prefix + i`` (4 bytes) and, as associated data,
the header, the object's key, ``i`` and whether it is the last chunk: every chunk but
the last holds exactly ``chunk size`` plain bytes, and the last one (empty only for an
empty object) says it is. A changed byte, a chunk dropped, cut, moved or taken from
another object, or bytes added at the end all fail the check: the reader raises
:class:`~taskmanager.backup_storage.BackupDamaged` where the stream goes wrong (for a
cut, at its end) and never gives back a chunk it has not checked. Objects stored before
encryption (no magic) read as they are.

The checksum recorded on a backup is the SHA-256 of the stored bytes (the ciphertext):
the store's writer computes it, and ``reader(key, digest)`` feeds the digest the same
bytes, so restore and verify check what is stored. ``CELLAR_BACKUP_ENCRYPTION=off``
writes plain objects (to measure what encryption costs); encrypted ones still read.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import os
import uuid
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import SQLAlchemyError

from cellar.db import Database
from cellar.errors import CellarError
from cellar.models import DataKey, new_id
from cellar.secrets import SecretBox
from taskmanager.backup_storage import (
    READ_BYTES,
    BackupDamaged,
    BackupMissing,
    BackupStorage,
    BackupWriter,
    Digest,
    StorageError,
    Written,
)

logger = logging.getLogger(__name__)

MAGIC = b"\x89CELLAR\x1a"  # not text, not tar, gzip or zstd: no plain backup starts so
VERSION = 1
CHUNK_BYTES = READ_BYTES  # a chunk opens into one piece of a reader
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # a header asking for more is not one Cellar wrote
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 8
MAX_CHUNKS = 2**32  # the counter's room in the nonce (4 PiB at 1 MiB a chunk)
HEADER_BYTES = len(MAGIC) + 1 + 4 + 16 + NONCE_PREFIX_BYTES
SEALED_FIELD = "aes-256-gcm"  # the data key's name inside its sealed row


@dataclasses.dataclass(frozen=True)
class Header:
    """What an encrypted object starts with."""

    key_id: str
    nonce_prefix: bytes
    chunk_bytes: int = CHUNK_BYTES
    version: int = VERSION

    def pack(self) -> bytes:
        return b"".join(
            (
                MAGIC,
                self.version.to_bytes(1, "big"),
                self.chunk_bytes.to_bytes(4, "big"),
                uuid.UUID(self.key_id).bytes,
                self.nonce_prefix,
            )
        )

    @classmethod
    def parse(cls, data: bytes, key: str) -> Header:
        """The header at the start of ``data``; BackupDamaged when it is not one."""
        if len(data) < HEADER_BYTES or not data.startswith(MAGIC):
            raise BackupDamaged(f"the backup {key} is damaged: its header is cut short")
        version = data[len(MAGIC)]
        if version != VERSION:
            raise BackupDamaged(
                f"the backup {key} is encrypted in format {version}, which this Cellar cannot read"
            )
        at = len(MAGIC) + 1
        chunk_bytes = int.from_bytes(data[at : at + 4], "big")
        if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise BackupDamaged(f"the backup {key} is damaged: its header is not valid")
        key_id = str(uuid.UUID(bytes=data[at + 4 : at + 20]))
        return cls(key_id, data[at + 20 : HEADER_BYTES], chunk_bytes, version)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _bound(header: bytes, key: str, index: int, last: bool) -> bytes:
    """The associated data of chunk ``index``: its header, object, place and lastness."""
    name = key.encode()
    return b"".join(
        (header, len(name).to_bytes(2, "big"), name, index.to_bytes(4, "big"), bytes([last]))
    )


class DataKeys:
    """The data keys of stored objects: rows of ``data_keys``, sealed by ``box``.

    Each call uses a session of its own. On SQLite only one connection writes at a time,
    so open a writer, or delete, with no write pending in your own session (the
    workflows commit before they stream). A writer that fails, or a worker killed while
    it writes, leaves its data key's row behind: it seals nothing that is kept.
    """

    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def new(self) -> tuple[str, bytes]:
        """A new random data key, recorded (sealed) before any byte it seals is stored."""
        raw = AESGCM.generate_key(bit_length=256)
        row = DataKey(id=new_id(), sealed=self.box.seal({SEALED_FIELD: _text(raw)}))
        try:
            with self.db.session() as session:
                session.add(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot record a backup's data key: {type(exc).__name__}") from exc
        return row.id, raw

    def get(self, key_id: str, key: str) -> bytes:
        """The data key ``key_id`` that the object ``key`` names; BackupDamaged when it is
        gone or no key of the ring opens it."""
        try:
            with self.db.session() as session:
                row = session.get(DataKey, key_id)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read the data key of {key}: {type(exc).__name__}") from exc
        if row is None:
            raise BackupDamaged(f"the backup {key} cannot be decrypted: its data key is gone")
        try:
            raw = base64.b64decode(self.box.open(row.sealed)[SEALED_FIELD])
        except (CellarError, KeyError, ValueError) as exc:
            raise BackupDamaged(
                f"the backup {key} cannot be decrypted: no key of Cellar's key ring opens its "
                "data key (was a key retired too soon?)"
            ) from exc
        if len(raw) != 32:
            raise BackupDamaged(f"the backup {key} cannot be decrypted: its data key is not valid")
        return raw

    def forget(self, key_id: str) -> None:
        """Delete the data key ``key_id``, whose object is gone. A failure is logged, not
        raised: the object is gone either way, and a step run again would not find the
        key any more (the row stays, a few hundred bytes)."""
        try:
            with self.db.session() as session:
                row = session.get(DataKey, key_id)
                if row is not None:
                    session.delete(row)
        except SQLAlchemyError as exc:
            logger.warning("the data key %s of a deleted object stays: %s", key_id,
                           type(exc).__name__)  # fmt: skip


def _text(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class SealingWriter(BackupWriter):
    """Takes an object's plain bytes and hands them, sealed, to the store's writer.

    ``written`` is the store's own record: the size and SHA-256 of the stored bytes.
    """

    def __init__(self, stored: BackupWriter, key: str, key_id: str, data_key: bytes) -> None:
        # no BackupWriter.__init__: the store's writer counts and digests what is stored
        self.written = stored.written
        self._stored = stored
        self._key = key
        self._aead = AESGCM(data_key)
        self._header = Header(key_id, os.urandom(NONCE_PREFIX_BYTES)).pack()
        self._chunk = CHUNK_BYTES
        self._buffer = bytearray()
        self._index = 0
        stored.write(self._header)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self._buffer and len(view) > self._chunk:  # a whole chunk, more to come
                self._seal(view[: self._chunk], last=False)
                view = view[self._chunk :]
                continue
            room = self._chunk - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._chunk and view:
                self._seal(self._buffer, last=False)
                self._buffer.clear()

    def seal(self) -> Written:
        return self.written  # the store's writer seals its own record

    def finish(self) -> None:
        """Seal what is left as the last chunk (call once, when every byte was given)."""
        self._seal(self._buffer, last=True)
        self._buffer.clear()

    def _seal(self, plain: bytes | bytearray | memoryview, last: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise StorageError(f"the backup {self._key} is larger than one object can hold")
        nonce = _nonce(self._header[-NONCE_PREFIX_BYTES:], self._index)
        aad = _bound(self._header, self._key, self._index, last)
        self._stored.write(self._aead.encrypt(nonce, plain, aad))
        self._index += 1


class EncryptedStorage:
    """A store whose objects are encrypted at rest (see the module's notes)."""

    def __init__(self, inner: BackupStorage, keys: DataKeys, encrypt: bool = True) -> None:
        self.inner = inner
        self.keys = keys
        self.encrypt = encrypt

    def location(self, key: str) -> str:
        return self.inner.location(key)

    @contextlib.contextmanager
    def writer(
        self, key: str, attempt: str = "", before_publish: Callable[[], object] | None = None
    ) -> Iterator[BackupWriter]:
        """Write ``key`` anew, sealed by a new data key (plain when encryption is off)."""
        if not self.encrypt:
            with self.inner.writer(key, attempt, before_publish) as plain:
                yield plain
            return
        key_id, data_key = self.keys.new()
        with self.inner.writer(key, attempt, before_publish) as stored:
            sealing = SealingWriter(stored, key, key_id, data_key)
            yield sealing
            sealing.finish()

    def reader(self, key: str, digest: Digest | None = None) -> Iterator[bytes]:
        """The plain bytes of ``key`` in pieces of at most ``READ_BYTES``, each checked
        before it is given; ``digest`` is fed the stored bytes."""
        with _closing(self.inner.reader(key, digest)) as source:
            head, rest = _split(source, HEADER_BYTES)
            if not head.startswith(MAGIC):  # stored before encryption: as it is
                if head:
                    yield head
                yield from rest
                return
            header = Header.parse(head, key)
            aead = AESGCM(self.keys.get(header.key_id, key))
            yield from _opened(aead, header, head, key, rest)

    def checksum(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of what is stored under ``key`` now; BackupDamaged when it is
        encrypted by a data key that cannot be had (the bytes are not decrypted here)."""
        digest = hashlib.sha256()
        with _closing(self.inner.reader(key, digest)) as source:
            head, rest = _split(source, HEADER_BYTES)
            if head.startswith(MAGIC):
                self.keys.get(Header.parse(head, key).key_id, key)
            size = len(head) + sum(len(block) for block in rest)
        return size, digest.hexdigest()

    def delete(self, key: str) -> bool:
        """Remove ``key``, then its data key; False when it was already gone."""
        key_id = self._key_id(key)
        removed = self.inner.delete(key)
        if key_id is not None:
            self.keys.forget(key_id)
        return removed

    def _key_id(self, key: str) -> str | None:
        """The data key that the object ``key`` names (None: none, or no object)."""
        try:
            with _closing(self.inner.reader(key)) as source:
                head, _rest = _split(source, HEADER_BYTES)
                return Header.parse(head, key).key_id if head.startswith(MAGIC) else None
        except BackupMissing:
            return None
        except BackupDamaged:
            logger.warning("the backup %s has no valid header; its data key stays", key)
            return None


@contextlib.contextmanager
def _closing(source: Iterator[bytes]) -> Iterator[Iterator[bytes]]:
    """``source``, closed at the end (a store's reader closes its file or its body)."""
    try:
        yield source
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _split(blocks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first ``size`` bytes of ``blocks`` (fewer if there are not that many), and
    an iterator over the rest."""
    head = bytearray()
    for block in blocks:
        need = size - len(head)
        head += block[:need]
        if len(block) > need:
            return bytes(head), itertools.chain((block[need:],), blocks)
        if len(head) == size:
            break
    return bytes(head), blocks


def _opened(
    aead: AESGCM, header: Header, head: bytes, key: str, blocks: Iterator[bytes]
) -> Iterator[bytes]:
    """The plain bytes of the sealed chunks in ``blocks``, each checked before it goes."""
    sealed = header.chunk_bytes + TAG_BYTES
    buffer = bytearray()
    index = 0
    for block in blocks:
        buffer += block
        while len(buffer) > sealed:  # more follows: this chunk is not the last
            plain = _open(aead, header, head, key, buffer[:sealed], index, last=False)
            del buffer[:sealed]
            index += 1
            yield from _pieces(plain)
    if len(buffer) < TAG_BYTES:
        raise BackupDamaged(f"the backup {key} is damaged: it is cut short")
    yield from _pieces(_open(aead, header, head, key, buffer, index, last=True))


def _open(
    aead: AESGCM, header: Header, head: bytes, key: str, sealed: bytearray, index: int, last: bool
) -> bytes:
    nonce, bound = _nonce(header.nonce_prefix, index), _bound(head, key, index, last)
    try:
        return aead.decrypt(nonce, sealed, bound)
    except InvalidTag as exc:
        raise BackupDamaged(
            f"the backup {key} is damaged: chunk {index} fails its integrity check (the stored "
            "bytes were changed, cut short or reordered)"
        ) from exc


def _pieces(plain: bytes) -> Iterator[bytes]:
    for start in range(0, len(plain), READ_BYTES):
        yield plain[start : start + READ_BYTES]
