"""Backups encrypted at rest: what is stored, what is read back, and what is refused."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from cellar.db import Database
from cellar.models import DataKey
from cellar.secrets import SecretBox
from taskmanager.backup_crypto import (
    CHUNK_BYTES,
    HEADER_BYTES,
    MAGIC,
    TAG_BYTES,
    DataKeys,
    EncryptedStorage,
)
from taskmanager.backup_s3 import MIB, S3Storage
from taskmanager.backup_storage import READ_BYTES, BackupDamaged, BackupMissing, LocalStorage
from tests.unit.taskmanager.test_backup_storage import bucket, client, endpoint  # noqa: F401

KEY = "proj1/backup-1"
MARKER = b"CREATE TABLE secret_customers"
ODD_SIZES = (1, 4095, 777_777, CHUNK_BYTES + 5, 65_537, 2 * CHUNK_BYTES - 1, 3)
SEALED_CHUNK = CHUNK_BYTES + TAG_BYTES


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'cellar.db'}")
    database.upgrade()
    yield database
    database.engine.dispose()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def inner(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


@pytest.fixture
def storage(inner: LocalStorage, db: Database, box: SecretBox) -> EncryptedStorage:
    return EncryptedStorage(inner, DataKeys(db, box))


def odd_pieces(data: bytes) -> Iterator[bytes]:
    start, turn = 0, 0
    while start < len(data):
        size = ODD_SIZES[turn % len(ODD_SIZES)]
        yield data[start : start + size]
        start, turn = start + size, turn + 1


def write(storage: EncryptedStorage, data: bytes, key: str = KEY) -> tuple[int, str]:
    with storage.writer(key) as out:
        for piece in odd_pieces(data):
            out.write(piece)
    return out.written.size, out.written.checksum


def read(storage: EncryptedStorage, key: str = KEY) -> bytes:
    return b"".join(storage.reader(key))


def on_disk(inner: LocalStorage, key: str = KEY) -> bytes:
    return inner.path(key).read_bytes()


def data_keys(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DataKey)) or 0)


@pytest.mark.parametrize(
    "size", [5 * CHUNK_BYTES + 12_345, 3 * CHUNK_BYTES, CHUNK_BYTES, 1], ids=str
)
def test_a_large_stream_written_in_odd_pieces_reads_back_the_same(
    storage: EncryptedStorage, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    write(storage, data)
    pieces = list(storage.reader(KEY))
    assert b"".join(pieces) == data
    assert max(len(piece) for piece in pieces) <= READ_BYTES


def test_an_empty_object_reads_back_empty(storage: EncryptedStorage, inner: LocalStorage) -> None:
    size, _checksum = write(storage, b"")
    assert read(storage) == b""
    assert size == HEADER_BYTES + TAG_BYTES == len(on_disk(inner))


def test_the_checksum_is_the_sha256_of_the_stored_bytes(
    storage: EncryptedStorage, inner: LocalStorage
) -> None:
    data = MARKER + random.Random(1).randbytes(2 * CHUNK_BYTES)
    size, checksum = write(storage, data)
    stored = on_disk(inner)
    assert (size, checksum) == (len(stored), hashlib.sha256(stored).hexdigest())
    assert checksum != hashlib.sha256(data).hexdigest()
    assert storage.checksum(KEY) == (size, checksum)
    digest = hashlib.sha256()
    assert b"".join(storage.reader(KEY, digest)) == data
    assert digest.hexdigest() == checksum


def test_the_stored_bytes_hold_no_plain_text(
    storage: EncryptedStorage, inner: LocalStorage
) -> None:
    write(storage, MARKER * 1000)
    stored = on_disk(inner)
    assert stored.startswith(MAGIC)
    assert MARKER not in stored


def test_every_object_has_a_data_key_of_its_own(
    storage: EncryptedStorage, inner: LocalStorage, db: Database
) -> None:
    write(storage, b"same bytes", "proj1/a")
    write(storage, b"same bytes", "proj1/b")
    assert data_keys(db) == 2
    assert on_disk(inner, "proj1/a")[:HEADER_BYTES] != on_disk(inner, "proj1/b")[:HEADER_BYTES]


def change_stored(inner: LocalStorage, edit: object) -> None:
    path = inner.path(KEY)
    data = path.read_bytes()
    assert callable(edit)
    path.write_bytes(edit(data))


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def chunk(data: bytes, index: int) -> bytes:
    start = HEADER_BYTES + index * SEALED_CHUNK
    return data[start : start + SEALED_CHUNK]


THREE_CHUNKS = random.Random(3).randbytes(2 * CHUNK_BYTES + 100)
DAMAGE = {
    "a byte of the data changed": lambda d: flip(d, HEADER_BYTES + CHUNK_BYTES + 7),
    "a byte of the header changed": lambda d: flip(d, HEADER_BYTES - 1),
    "a byte of a tag changed": lambda d: flip(d, len(d) - 1),
    "the last chunk dropped": lambda d: d[: HEADER_BYTES + 2 * SEALED_CHUNK],
    "cut inside the last chunk": lambda d: d[:-50],
    "cut to its header": lambda d: d[:HEADER_BYTES],
    "two chunks swapped": lambda d: d[:HEADER_BYTES] + chunk(d, 1) + chunk(d, 0) + chunk(d, 2),
    "a chunk repeated": lambda d: d[: HEADER_BYTES + SEALED_CHUNK] + d[HEADER_BYTES:],
    "bytes added at the end": lambda d: d + b"\x00" * 16,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_objects_are_refused_not_read(
    storage: EncryptedStorage, inner: LocalStorage, damage: str
) -> None:
    write(storage, THREE_CHUNKS)
    change_stored(inner, DAMAGE[damage])
    with pytest.raises(BackupDamaged, match="is damaged"):
        read(storage)


def test_a_chunk_from_another_object_is_refused(
    storage: EncryptedStorage, inner: LocalStorage
) -> None:
    write(storage, THREE_CHUNKS)
    write(storage, THREE_CHUNKS, "proj1/other")
    other = on_disk(inner, "proj1/other")
    change_stored(inner, lambda d: d[: HEADER_BYTES + SEALED_CHUNK] + chunk(other, 1) + d[-101:])
    with pytest.raises(BackupDamaged, match="chunk 1 fails its integrity check"):
        read(storage)


def test_an_object_moved_to_another_name_is_refused(
    storage: EncryptedStorage, inner: LocalStorage
) -> None:
    write(storage, b"backup of project 1")
    moved = inner.path("proj2/backup-1")
    moved.parent.mkdir(parents=True)
    moved.write_bytes(on_disk(inner))
    with pytest.raises(BackupDamaged):
        read(storage, "proj2/backup-1")


def test_an_object_sealed_by_another_key_ring_cannot_be_read(
    storage: EncryptedStorage, inner: LocalStorage, db: Database
) -> None:
    write(storage, b"secret rows")
    stranger = EncryptedStorage(inner, DataKeys(db, SecretBox(Fernet.generate_key())))
    with pytest.raises(BackupDamaged, match="no key of Cellar's key ring opens its data key"):
        read(stranger)
    with pytest.raises(BackupDamaged, match="no key of Cellar's key ring"):
        stranger.checksum(KEY)


def test_an_object_whose_data_key_is_gone_cannot_be_read(
    storage: EncryptedStorage, db: Database
) -> None:
    write(storage, b"secret rows")
    with db.session() as session:
        session.query(DataKey).delete()
    with pytest.raises(BackupDamaged, match="its data key is gone"):
        read(storage)


def test_an_object_stored_before_encryption_reads_as_it_is(
    storage: EncryptedStorage, inner: LocalStorage
) -> None:
    data = b"PGDMP plain backup " + random.Random(4).randbytes(CHUNK_BYTES + 3)
    with inner.writer(KEY) as out:
        out.write(data)
    assert read(storage) == data
    assert storage.checksum(KEY) == (out.written.size, out.written.checksum)
    with inner.writer("proj1/tiny") as out:
        out.write(b"ab")
    assert read(storage, "proj1/tiny") == b"ab"


def test_with_encryption_off_new_objects_are_plain_and_old_ones_still_read(
    storage: EncryptedStorage, inner: LocalStorage, db: Database, box: SecretBox
) -> None:
    write(storage, b"written while encryption was on", "proj1/old")
    plain = EncryptedStorage(inner, DataKeys(db, box), encrypt=False)
    size, checksum = write(plain, MARKER)
    assert on_disk(inner) == MARKER
    assert (size, checksum) == (len(MARKER), hashlib.sha256(MARKER).hexdigest())
    assert read(plain, "proj1/old") == b"written while encryption was on"


def test_a_failed_write_leaves_no_object(storage: EncryptedStorage, inner: LocalStorage) -> None:
    with pytest.raises(RuntimeError, match="agent died"), storage.writer(KEY) as out:
        out.write(b"half a backup")
        raise RuntimeError("agent died")
    with pytest.raises(BackupMissing):
        read(storage)
    assert list(inner.path(KEY).parent.iterdir()) == []


def test_delete_removes_the_object_and_its_data_key(
    storage: EncryptedStorage, db: Database
) -> None:
    write(storage, b"to be deleted")
    assert data_keys(db) == 1
    assert (storage.delete(KEY), storage.delete(KEY)) == (True, False)
    assert data_keys(db) == 0
    with pytest.raises(BackupMissing):
        read(storage)


def test_a_reader_closed_early_closes_the_stored_object(storage: EncryptedStorage) -> None:
    write(storage, random.Random(5).randbytes(3 * CHUNK_BYTES))
    pieces = storage.reader(KEY)
    assert isinstance(pieces, Generator)
    assert len(next(pieces)) == CHUNK_BYTES
    pieces.close()  # a restore that stopped: nothing is left open (warnings are errors)


def test_an_encrypted_object_in_s3_reads_back_and_its_checksum_is_what_s3_holds(
    request: pytest.FixtureRequest, db: Database, box: SecretBox
) -> None:
    api: Any = request.getfixturevalue("client")  # S3 on loopback, from the store's tests
    name: str = request.getfixturevalue("bucket")
    s3 = EncryptedStorage(S3Storage(name, "backups", api, part_bytes=5 * MIB), DataKeys(db, box))
    data = MARKER + random.Random(6).randbytes(11 * MIB + 7)  # three multipart parts
    size, checksum = write(s3, data)
    stored = api.get_object(Bucket=name, Key=f"backups/{KEY}")
    body = stored["Body"].read()
    assert (size, checksum) == (len(body), hashlib.sha256(body).hexdigest())
    assert stored["Metadata"]["sha256"] == checksum
    assert MARKER not in body
    assert read(s3) == data
    assert s3.delete(KEY) and data_keys(db) == 0
