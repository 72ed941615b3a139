"""Backups in an S3-compatible bucket (``CELLAR_BACKUP_URL=s3://bucket/prefix``).

Use :class:`S3Storage` as any :class:`~taskmanager.backup_storage.BackupStorage`. Its
writer streams a multipart upload one part at a time (a backup smaller than one part is
one put) and completes it only when the ``with`` block ends well: any error aborts the
upload, so neither a half backup nor a pending upload is left behind. The finished
object carries its SHA-256 in its metadata (``x-amz-meta-sha256``). botocore's errors
become :class:`~taskmanager.backup_storage.StorageError` here, and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from taskmanager.backup_storage import (
    READ_BYTES,
    BackupMissing,
    BackupWriter,
    Digest,
    StorageError,
    check_key,
    digested,
    size_and_checksum,
)

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
PART_BYTES = 8 * MIB  # the first parts' size (S3 wants 5 MiB at least, but for the last)
MAX_PART_BYTES = 64 * MIB  # parts double every PARTS_PER_SIZE parts, up to this
PARTS_PER_SIZE = 1000  # so that S3's 10,000 parts hold about 500 GB
MAX_PARTS = 10_000
COPY_PART_BYTES = 1024 * MIB  # objects this big get their metadata through a multipart copy
MISSING_CODES = ("NoSuchKey", "NoSuchBucket", "404", "NotFound")
DENIED_CODES = ("403", "AccessDenied", "Forbidden")
CONTENT_TYPE = "application/octet-stream"

S3Client = Any  # a boto3 "s3" client: boto3 ships no type hints


def s3_client(endpoint_url: str, region: str) -> S3Client:
    """A client for AWS S3, or for the S3-compatible service at ``endpoint_url``.

    Credentials come from where boto3 looks for them: ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role.
    """
    options: dict[str, Any] = {
        "region_name": region,
        "connect_timeout": 10,
        "read_timeout": 120,
        "retries": {"mode": "standard", "max_attempts": 5},
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}  # what every S3-compatible service speaks
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url or None, config=Config(**options))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _failure(doing: str, exc: Exception) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        said = error.get("Message") or "no message"
        return StorageError(f"{doing} failed: S3 answered {error.get('Code', '?')}: {said}")
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"{doing} failed: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    return StorageError(f"{doing} failed: {exc}")


@contextlib.contextmanager
def _translated(doing: str, missing: str = "") -> Iterator[None]:
    """botocore's errors as StorageError; BackupMissing(``missing``) for an absent key."""
    try:
        yield
    except ClientError as exc:
        if missing and _code(exc) in MISSING_CODES:
            raise BackupMissing(missing) from exc
        raise _failure(doing, exc) from exc
    except BotoCoreError as exc:
        raise _failure(doing, exc) from exc


class S3Storage:
    """Backups as objects under ``s3://bucket/prefix/`` (``CELLAR_BACKUP_URL``)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        part_bytes: int = PART_BYTES,
        copy_part_bytes: int = COPY_PART_BYTES,
    ) -> None:
        if part_bytes < 5 * MIB:
            raise ValueError("S3 upload parts are 5 MiB at least")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.part_bytes = part_bytes
        self.copy_part_bytes = copy_part_bytes
        self._bucket_seen = False

    def name(self, key: str) -> str:
        """The object's name in the bucket."""
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.name(key)}"

    def check_bucket(self) -> None:
        """Fail with a clear reason when the bucket is missing or closed (checked once)."""
        if self._bucket_seen:
            return
        where = f"the backup bucket {self.bucket!r} at {self.client.meta.endpoint_url}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                raise StorageError(
                    f"{where} does not exist: create it, or fix CELLAR_BACKUP_URL"
                ) from exc
            if _code(exc) in DENIED_CODES:
                raise StorageError(
                    f"{where} refused access: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from exc
            raise _failure(f"checking {where}", exc) from exc
        except BotoCoreError as exc:
            raise _failure(f"checking {where}", exc) from exc
        self._bucket_seen = True
        logger.info("backups are stored in s3://%s/%s", self.bucket, self.prefix)

    @contextlib.contextmanager
    def writer(
        self, key: str, attempt: str = "", before_publish: Callable[[], object] | None = None
    ) -> Iterator[BackupWriter]:
        """Write ``key`` anew; the object replaces any earlier one only when complete.

        Each attempt uploads through a multipart upload of its own; unfinished uploads
        of earlier attempts at the same key are aborted first.
        """
        upload = _Upload(self, self.name(key))
        self.check_bucket()
        self._abort_unfinished(upload.name)
        try:
            writer = BackupWriter(upload.write)
            yield writer
            checksum = writer.seal().checksum
            if before_publish is not None:
                before_publish()
            upload.finish(checksum)
        except BaseException:
            upload.abort()
            raise
        logger.info("stored backup %s (%d bytes)", self.location(key), writer.written.size)

    def _abort_unfinished(self, name: str) -> None:
        with _translated(f"listing the unfinished uploads of s3://{self.bucket}/{name}"):
            reply = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=name)
        for upload in reply.get("Uploads", []):
            if upload.get("Key") != name:
                continue
            with _translated(f"aborting an earlier upload of s3://{self.bucket}/{name}"):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload["UploadId"]
                )
            logger.info("aborted an unfinished upload of s3://%s/%s", self.bucket, name)

    def reader(self, key: str, digest: Digest | None = None) -> Iterator[bytes]:
        """The bytes of ``key`` in pieces of at most ``READ_BYTES`` (also fed to ``digest``)."""
        name, where = self.name(key), self.location(key)
        self.check_bucket()
        with _translated(f"reading {where}", missing=f"the backup {key} is missing from {where}"):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        try:
            with _translated(f"reading {where}"):
                yield from digested(body.iter_chunks(READ_BYTES), digest)
        finally:
            body.close()

    def checksum(self, key: str) -> tuple[int, str]:
        """Size and SHA-256 of what is stored under ``key`` now (all of it is read)."""
        return size_and_checksum(self.reader(key))

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was already gone."""
        name, where = self.name(key), self.location(key)
        self.check_bucket()
        self._abort_unfinished(name)
        try:
            with _translated(f"deleting {where}", missing=where):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except BackupMissing:
            return False
        with _translated(f"deleting {where}"):
            self.client.delete_object(Bucket=self.bucket, Key=name)
        return True


class _Upload:
    """One object being written: one put when small, else a multipart upload."""

    def __init__(self, storage: S3Storage, name: str) -> None:
        self.storage = storage
        self.client = storage.client
        self.bucket = storage.bucket
        self.name = name
        self.where = f"s3://{self.bucket}/{name}"
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._completed = False

    def _part_size(self) -> int:
        growth = 2 ** (len(self._parts) // PARTS_PER_SIZE)
        return min(self.storage.part_bytes * growth, max(self.storage.part_bytes, MAX_PART_BYTES))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self._part_size() - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= self._part_size():
                self._send_part()

    def _send_part(self) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise StorageError(f"{self.where} is larger than one S3 upload can hold")
        if self._upload_id is None:
            with _translated(f"starting the upload of {self.where}"):
                reply = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.name, ContentType=CONTENT_TYPE
                )
            self._upload_id = reply["UploadId"]
        number = len(self._parts) + 1
        with _translated(f"uploading part {number} of {self.where}"):
            reply = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.name,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self._buffer.clear()

    def finish(self, checksum: str) -> None:
        metadata = {"sha256": checksum}
        if self._upload_id is None:
            with _translated(f"storing {self.where}"):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.name,
                    Body=bytes(self._buffer),
                    ContentType=CONTENT_TYPE,
                    Metadata=metadata,
                )
            return
        if self._buffer:
            self._send_part()
        with _translated(f"completing the upload of {self.where}"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.name,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._completed = True
        # S3 fixes an upload's metadata when it starts, before the checksum is known:
        # a copy onto itself (within S3, no bytes through Cellar) records it.
        size = self.storage.copy_part_bytes
        with _translated(f"recording the checksum of {self.where}"):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.name},
                self.bucket,
                self.name,
                ExtraArgs={
                    "Metadata": metadata,
                    "MetadataDirective": "REPLACE",
                    "ContentType": CONTENT_TYPE,
                },
                Config=TransferConfig(multipart_threshold=size, multipart_chunksize=size),
            )

    def abort(self) -> None:
        """Leave nothing behind: abort the upload, or remove an object left unlabelled."""
        try:
            if self._completed:
                self.client.delete_object(Bucket=self.bucket, Key=self.name)
            elif self._upload_id is not None:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.name, UploadId=self._upload_id
                )
        except (ClientError, BotoCoreError):
            logger.exception("could not clean up the failed upload of %s", self.where)
        else:
            if self._upload_id is not None:
                logger.info("abandoned the upload of %s", self.where)
