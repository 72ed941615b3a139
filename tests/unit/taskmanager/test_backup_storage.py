"""Backup storage: local files, and S3 against a real S3-compatible endpoint on loopback."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from cellar import settings as settings_module
from taskmanager.backup_s3 import COPY_PART_BYTES, MIB, S3Storage, s3_client
from taskmanager.backup_storage import (
    READ_BYTES,
    BackupMissing,
    BackupStorage,
    LocalStorage,
    StorageError,
    storage_for,
)

KEY = "proj1/backup-1"
PIECE_SIZES = (1, 4095, 777_777, 3 * MIB + 5, 65_537, 9 * MIB + 1)  # 9 MiB spans two parts


def uneven_pieces(data: bytes) -> Iterator[bytes]:
    start, turn = 0, 0
    while start < len(data):
        size = PIECE_SIZES[turn % len(PIECE_SIZES)]
        yield data[start : start + size]
        start, turn = start + size, turn + 1


def stored(storage: BackupStorage, key: str = KEY) -> bytes:
    return b"".join(storage.reader(key))


# --- local directory ---------------------------------------------------------------------


def test_local_storage_writes_reads_checks_and_deletes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.writer(KEY) as out:
        out.write(b"page-1")
        out.write(b"page-2")

    assert (out.written.size, out.written.checksum) == (
        12,
        hashlib.sha256(b"page-1page-2").hexdigest(),
    )
    assert stored(storage) == b"page-1page-2"
    assert storage.checksum(KEY) == (12, out.written.checksum)
    assert storage.location(KEY) == f"file://{tmp_path / KEY}"
    assert (storage.delete(KEY), storage.delete(KEY)) == (True, False)
    with pytest.raises(BackupMissing, match="missing"):
        storage.checksum(KEY)


def test_local_storage_never_shows_a_partial_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.writer(KEY) as out:
        out.write(b"the good one")
    with pytest.raises(RuntimeError, match="agent died"), storage.writer(KEY) as out:
        out.write(b"half of a new one")
        raise RuntimeError("agent died")

    assert stored(storage) == b"the good one"
    assert sorted(p.name for p in (tmp_path / "proj1").iterdir()) == ["backup-1"]
    assert out.written.checksum == ""


def test_each_attempt_writes_its_own_scratch_file_and_drops_older_ones(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    folder = tmp_path / "proj1"
    first = storage.writer(KEY, "1-aaaa")
    out = first.__enter__()
    out.write(b"from attempt 1, which stalls")
    assert [p.name for p in folder.iterdir()] == ["backup-1.1-aaaa.partial"]
    with storage.writer(KEY, "2-bbbb") as second:
        assert [p.name for p in folder.iterdir()] == ["backup-1.2-bbbb.partial"]
        second.write(b"from attempt 2")
    with pytest.raises(StorageError, match="cannot write backup"):
        first.__exit__(None, None, None)  # its scratch file is gone: it cannot publish

    assert stored(storage) == b"from attempt 2"
    assert [p.name for p in folder.iterdir()] == ["backup-1"]


def test_two_writers_of_one_archive_file_at_once_both_publish(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    first = storage.writer(KEY)
    one = first.__enter__()
    one.write(b"the same closed segment")
    with storage.writer(KEY) as two:  # another round collects the same file meanwhile
        two.write(b"the same closed segment")
    first.__exit__(None, None, None)

    assert stored(storage) == b"the same closed segment"
    assert [p.name for p in (tmp_path / "proj1").iterdir()] == ["backup-1"]


def test_a_scratch_file_nobody_writes_any_more_is_swept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    folder = tmp_path / "proj1"
    folder.mkdir()
    (folder / "old-segment.dead.partial").write_bytes(b"left by a killed worker")
    (folder / "new-segment.live.partial").write_bytes(b"being written")
    long_ago = time.time() - 3600
    os.utime(folder / "old-segment.dead.partial", (long_ago, long_ago))
    with storage.writer(KEY) as out:
        out.write(b"x")

    assert sorted(p.name for p in folder.iterdir()) == ["backup-1", "new-segment.live.partial"]


def test_a_backup_is_published_only_if_the_guard_lets_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)

    def lost() -> None:
        raise LookupError("the lease was lost")

    with pytest.raises(LookupError, match="lease"), storage.writer(KEY, "3-cccc", lost) as out:
        out.write(b"complete, but too late")

    assert list((tmp_path / "proj1").iterdir()) == []
    published: list[str] = []
    with storage.writer(KEY, "4-dddd", lambda: published.append("checked")) as out:
        out.write(b"in time")
    assert published == ["checked"] and stored(storage) == b"in time"


def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a backup key"):
        LocalStorage(tmp_path).location("../etc/passwd")


# --- S3 ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cellar-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cellar-test")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return s3_client(endpoint, "us-east-1")


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"cellar-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


class Recording:
    """The S3 client, noting each call (and its part sizes), failing the calls told to."""

    def __init__(self, client: Any, fail: dict[str, Exception] | None = None) -> None:
        self.client = client
        self.fail = fail or {}
        self.calls: list[str] = []
        self.part_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name in self.fail:
                raise self.fail[name]
            if name == "upload_part":
                self.part_sizes.append(len(kwargs["Body"]))
            return method(*args, **kwargs)

        return call


def no_uploads_pending(client: Any, bucket: str) -> bool:
    return not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def exists(client: Any, bucket: str, name: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "404"
        return False
    return True


@pytest.mark.parametrize("copy_part_bytes", [COPY_PART_BYTES, 8 * MIB], ids=["copy", "mp-copy"])
def test_a_large_backup_streams_as_a_multipart_upload(
    client: Any, bucket: str, copy_part_bytes: int
) -> None:
    recording = Recording(client)
    storage = S3Storage(bucket, "/backups/", recording, copy_part_bytes=copy_part_bytes)
    data = random.Random(7).randbytes(20 * MIB + 12_345)

    with storage.writer(KEY) as out:
        for piece in uneven_pieces(data):
            out.write(piece)

    sha256 = hashlib.sha256(data).hexdigest()
    assert (out.written.size, out.written.checksum) == (len(data), sha256)
    assert recording.part_sizes == [8 * MIB, 8 * MIB, len(data) - 16 * MIB]
    assert "put_object" not in recording.calls
    pieces = list(storage.reader(KEY))
    assert b"".join(pieces) == data
    assert max(len(piece) for piece in pieces) <= READ_BYTES
    assert storage.checksum(KEY) == (len(data), sha256)
    head = client.head_object(Bucket=bucket, Key=f"backups/{KEY}")
    assert head["Metadata"] == {"sha256": sha256}
    assert head["ContentLength"] == len(data)
    assert storage.location(KEY) == f"s3://{bucket}/backups/{KEY}"
    assert no_uploads_pending(client, bucket)


def test_a_small_backup_is_one_put_with_its_checksum(client: Any, bucket: str) -> None:
    recording = Recording(client)
    storage = S3Storage(bucket, "", recording)
    with storage.writer(KEY) as out:
        out.write(b"page-1")
        out.write(b"page-2")

    sha256 = hashlib.sha256(b"page-1page-2").hexdigest()
    assert (out.written.size, out.written.checksum) == (12, sha256)
    assert "create_multipart_upload" not in recording.calls
    assert client.head_object(Bucket=bucket, Key=KEY)["Metadata"] == {"sha256": sha256}
    assert stored(storage) == b"page-1page-2"
    assert storage.location(KEY) == f"s3://{bucket}/{KEY}"


def test_an_upload_left_by_an_earlier_attempt_is_aborted(client: Any, bucket: str) -> None:
    storage = S3Storage(bucket, "", client)
    left = client.create_multipart_upload(Bucket=bucket, Key=KEY)["UploadId"]
    client.create_multipart_upload(Bucket=bucket, Key=KEY + "-other")
    with storage.writer(KEY, "2-bbbb") as out:
        out.write(b"page-1")

    pending = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in pending] == [KEY + "-other"]
    assert left not in [u["UploadId"] for u in pending]
    assert stored(storage) == b"page-1"


def test_an_s3_backup_is_published_only_if_the_guard_lets_it(client: Any, bucket: str) -> None:
    storage = S3Storage(bucket, "", client, part_bytes=5 * MIB)

    def lost() -> None:
        raise LookupError("the lease was lost")

    with pytest.raises(LookupError), storage.writer(KEY, "3-cccc", lost) as out:
        out.write(random.Random(3).randbytes(6 * MIB))

    assert not exists(client, bucket, KEY)
    assert no_uploads_pending(client, bucket)


def test_an_error_inside_the_writer_leaves_no_object_and_no_upload(
    client: Any, bucket: str
) -> None:
    recording = Recording(client)
    storage = S3Storage(bucket, "backups", recording)
    with pytest.raises(RuntimeError, match="agent died"), storage.writer(KEY) as out:
        out.write(bytes(10 * MIB))  # one part is already uploaded
        raise RuntimeError("agent died")

    assert "abort_multipart_upload" in recording.calls
    assert not exists(client, bucket, f"backups/{KEY}")
    assert no_uploads_pending(client, bucket)
    assert out.written.checksum == ""


def test_a_failed_rewrite_keeps_the_earlier_backup(client: Any, bucket: str) -> None:
    storage = S3Storage(bucket, "", client)
    with storage.writer(KEY) as out:
        out.write(b"the good one")
    with pytest.raises(RuntimeError, match="agent died"), storage.writer(KEY) as out:
        out.write(bytes(9 * MIB))
        raise RuntimeError("agent died")

    assert stored(storage) == b"the good one"
    assert no_uploads_pending(client, bucket)


def s3_refusal(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "We encountered an internal error"}},
                       operation)  # fmt: skip


def test_a_failing_part_upload_is_a_storage_error_and_is_aborted(client: Any, bucket: str) -> None:
    recording = Recording(client, fail={"upload_part": s3_refusal("InternalError", "UploadPart")})
    storage = S3Storage(bucket, "", recording)
    with pytest.raises(StorageError, match=r"uploading part 1 of .* InternalError"):
        with storage.writer(KEY) as out:
            out.write(bytes(8 * MIB))

    assert "abort_multipart_upload" in recording.calls
    assert no_uploads_pending(client, bucket)
    assert not exists(client, bucket, KEY)


def test_an_object_whose_checksum_cannot_be_recorded_is_removed(client: Any, bucket: str) -> None:
    recording = Recording(client, fail={"copy": s3_refusal("InternalError", "CopyObject")})
    storage = S3Storage(bucket, "", recording)
    with pytest.raises(StorageError, match="recording the checksum"), storage.writer(KEY) as out:
        out.write(bytes(9 * MIB))

    assert not exists(client, bucket, KEY)
    assert no_uploads_pending(client, bucket)


def test_a_missing_backup_is_backup_missing(client: Any, bucket: str) -> None:
    storage = S3Storage(bucket, "backups", client)
    with pytest.raises(BackupMissing, match=f"proj1/nothing is missing from s3://{bucket}/"):
        stored(storage, "proj1/nothing")
    with pytest.raises(BackupMissing):
        storage.checksum("proj1/nothing")


def test_delete_says_whether_there_was_something(client: Any, bucket: str) -> None:
    storage = S3Storage(bucket, "backups", client)
    with storage.writer(KEY) as out:
        out.write(b"x")

    assert storage.delete(KEY) is True
    assert storage.delete(KEY) is False
    assert not exists(client, bucket, f"backups/{KEY}")


@pytest.mark.parametrize(
    "use",
    [lambda s: s.writer(KEY).__enter__(), lambda s: stored(s), lambda s: s.delete(KEY)],
    ids=["writer", "reader", "delete"],
)
def test_a_missing_bucket_is_named_clearly(client: Any, use: Callable[[S3Storage], Any]) -> None:
    storage = S3Storage("cellar-no-such-bucket", "", client)
    with pytest.raises(StorageError, match=r"'cellar-no-such-bucket' at http.* does not exist"):
        use(storage)


def test_storage_for_picks_s3_from_the_backup_url(
    client: Any, bucket: str, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path))
    monkeypatch.setenv("CELLAR_BACKUP_URL", f"s3://{bucket}/cellar/backups")
    monkeypatch.setenv("CELLAR_S3_ENDPOINT_URL", endpoint)
    storage = storage_for(settings_module.load())

    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == (bucket, "cellar/backups")
    with storage.writer(KEY) as out:
        out.write(b"page-1")
    assert client.get_object(Bucket=bucket, Key=f"cellar/backups/{KEY}")["Body"].read() == (
        b"page-1"
    )


def test_storage_for_stays_local_without_a_backup_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path))
    monkeypatch.delenv("CELLAR_BACKUP_URL", raising=False)
    monkeypatch.delenv("CELLAR_BACKUP_DIR", raising=False)
    storage = storage_for(settings_module.load())

    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / "backups"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://bucket/prefix", "must be empty .* or s3://"),
        ("s3://", "names no valid bucket"),
        ("s3:///backups", "names no valid bucket"),
        ("s3://Not_A_Bucket", "names no valid bucket"),
        ("s3://bucket/a//b", "bad prefix"),
        ("s3://bucket/a/../b", "may not contain '..'"),
    ],
)
def test_a_bad_backup_url_stops_the_settings(
    url: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path))
    monkeypatch.setenv("CELLAR_BACKUP_URL", url)
    with pytest.raises(ValueError, match=f"CELLAR_BACKUP_URL.*{reason}"):
        settings_module.load()
