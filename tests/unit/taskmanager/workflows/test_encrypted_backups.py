"""Backup, restore, archive and delete steps with backups encrypted at rest."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from cellar.errors import AgentError
from cellar.models import ArchiveSegment, Backup, DataKey, Instance, Task, utcnow
from cellar.workflows import WorkflowName
from taskmanager import archive, runner
from taskmanager.backup_crypto import HEADER_BYTES, DataKeys, EncryptedStorage
from taskmanager.backup_storage import LocalStorage
from taskmanager.workflow import NEXT, StepFailed
from taskmanager.workflows.backup import storage_key
from tests.unit.taskmanager.workflows.support import (
    World,
    add_instance,
    add_task,
    change,
    load,
    run,
    stored_backup,
)
from tests.unit.taskmanager.workflows.test_backup import backing_up
from tests.unit.taskmanager.workflows.test_restore import restoring, segment

WAL = "000000010000000000000002"


@pytest.fixture
def sealed(world: World) -> World:
    """The world, its backups encrypted as in production."""
    world.services.storage = EncryptedStorage(
        world.services.storage, DataKeys(world.services.db, world.services.secrets)
    )
    return world


def sealed_backup(world: World, instance_id: str, data: bytes = b"the backup's bytes") -> str:
    """A completed backup whose file holds ``data``, encrypted. Written outside the row's
    transaction, as the workflows do: on SQLite the data key's row needs the write lock."""
    backup_id = stored_backup(world, instance_id, data, status="BUILDING")
    with world.services.storage.writer(storage_key(load(world, Backup, backup_id))) as out:
        out.write(data)
    written = out.written
    change(world, Backup, backup_id, status="COMPLETED", size_bytes=written.size,
           checksum=written.checksum)  # fmt: skip
    return backup_id


def plain_store(world: World) -> LocalStorage:
    storage = world.services.storage
    assert isinstance(storage, EncryptedStorage) and isinstance(storage.inner, LocalStorage)
    return storage.inner


def file_of(world: World, backup_id: str) -> bytes:
    return plain_store(world).path(storage_key(load(world, Backup, backup_id))).read_bytes()


def damage(world: World, backup_id: str) -> None:
    path = plain_store(world).path(storage_key(load(world, Backup, backup_id)))
    data = path.read_bytes()
    path.write_bytes(
        data[:HEADER_BYTES] + bytes([data[HEADER_BYTES] ^ 1]) + data[HEADER_BYTES + 1 :]
    )


def data_keys(world: World) -> int:
    with world.services.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DataKey)) or 0)


def test_take_backup_records_the_sha256_of_the_encrypted_bytes(sealed: World) -> None:
    backup_id, task_id = backing_up(sealed)
    assert run(sealed, task_id, "take_backup") is NEXT
    backup = load(sealed, Backup, backup_id)
    stored = file_of(sealed, backup_id)
    assert backup.status == "COMPLETED"
    assert (backup.size_bytes, backup.checksum) == (
        len(stored),
        hashlib.sha256(stored).hexdigest(),
    )
    assert b"page-1" not in stored
    assert b"".join(sealed.services.storage.reader(storage_key(backup))) == b"page-1page-2"


def test_a_postgresql_incremental_manifest_is_encrypted_and_still_restores(
    sealed: World,
) -> None:
    source = add_instance(sealed)
    parent = sealed_backup(sealed, source, b"full")
    sealed.agent.archive = {WAL: (b"wal-2", time.time())}
    backup_id, task_id = backing_up(sealed, source, parent_id=parent)
    assert run(sealed, task_id, "take_backup") is NEXT
    assert WAL.encode() not in file_of(sealed, backup_id)
    _instance_id, restore_task = restoring(sealed, [parent, backup_id])
    assert run(sealed, restore_task, "check_backups") is NEXT
    assert run(sealed, restore_task, "restore_data") is NEXT
    assert sealed.agent.restores == [
        ("full", 0, "tar", b"full"),
        (f"archive:{WAL}", 1, "wal", b"wal-2"),
    ]


def test_check_backups_and_restore_data_give_the_agent_the_plain_bytes(sealed: World) -> None:
    source = add_instance(sealed)
    full = sealed_backup(sealed, source, b"full")
    wal = segment(sealed, source, WAL, b"wal-2")
    _instance_id, task_id = restoring(sealed, [full], archive=[wal], restore_time="2030-01-01")
    assert run(sealed, task_id, "check_backups") is NEXT
    assert run(sealed, task_id, "restore_data") is NEXT
    assert sealed.agent.restores == [
        ("full", 0, "tar", b"full"),
        (f"archive:{WAL}", 1, "wal", b"wal-2"),
    ]


def test_check_backups_refuses_a_backup_changed_in_storage(sealed: World) -> None:
    full = sealed_backup(sealed, add_instance(sealed), b"full")
    damage(sealed, full)
    _instance_id, task_id = restoring(sealed, [full])
    with pytest.raises(StepFailed, match=f"backup {full} is damaged"):
        run(sealed, task_id, "check_backups")


def test_restore_data_fails_clearly_when_the_backup_fails_its_integrity_check(
    sealed: World,
) -> None:
    full = sealed_backup(sealed, add_instance(sealed), b"full")
    _instance_id, task_id = restoring(sealed, [full])
    assert run(sealed, task_id, "check_backups") is NEXT
    damage(sealed, full)
    with pytest.raises(StepFailed, match="chunk 0 fails its integrity check"):
        run(sealed, task_id, "restore_data")


def test_restore_data_names_the_storage_failure_that_the_agent_call_reports_as_its_own(
    sealed: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def like_grpc(kind: str, position: int, form: str, chunks: Iterator[bytes], *_: object,
                  **__: object) -> int:  # fmt: skip
        try:
            return len(b"".join(chunks))
        except Exception as exc:  # gRPC cancels the call when its request stream raises
            raise AgentError("Exception iterating requests!") from exc

    monkeypatch.setattr(sealed.agent, "restore", like_grpc)
    full = sealed_backup(sealed, add_instance(sealed), b"full")
    _instance_id, task_id = restoring(sealed, [full])
    damage(sealed, full)
    with pytest.raises(StepFailed, match=f"the backup {storage_key(load(sealed, Backup, full))}"):
        run(sealed, task_id, "restore_data")


def test_check_backups_fails_when_the_data_key_is_gone(sealed: World) -> None:
    full = sealed_backup(sealed, add_instance(sealed), b"full")
    with sealed.services.db.session() as session:
        session.query(DataKey).delete()
    _instance_id, task_id = restoring(sealed, [full])
    with pytest.raises(StepFailed, match="its data key is gone"):
        run(sealed, task_id, "check_backups")


def test_the_delete_backup_task_removes_the_backup_and_its_data_key(sealed: World) -> None:
    backup_id = sealed_backup(sealed, add_instance(sealed))
    assert data_keys(sealed) == 1
    task_id = add_task(sealed, WorkflowName.DELETE_BACKUP, None, {"backup_id": backup_id})
    runner.run_step(sealed.services, task_id)  # as the worker runs it
    assert load(sealed, Task, task_id).state == "COMPLETED"
    assert data_keys(sealed) == 0
    assert not plain_store(sealed).path(storage_key(load(sealed, Backup, backup_id))).exists()


def test_an_archive_file_two_rounds_store_at_once_keeps_the_checksum_of_what_is_stored(
    sealed: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = add_instance(sealed)
    sealed_backup(sealed, source_id, b"full")
    source = load(sealed, Instance, source_id)
    sealed.agent.archive = {WAL: (b"wal-2", time.time())}
    key = archive.archive_key(source, WAL)
    storage = sealed.services.storage

    def fetched_by_another_round_meanwhile(name: str, timeout: float) -> Iterator[bytes]:
        with storage.writer(key) as theirs:
            theirs.write(b"wal-2")
        with sealed.services.db.session() as session:
            session.add(
                ArchiveSegment(
                    project_id=source.project_id, instance_id=source.id, name=WAL,
                    size_bytes=theirs.written.size, checksum=theirs.written.checksum,
                    closed_at=utcnow(),
                )
            )  # fmt: skip
        yield b"wal-2"

    monkeypatch.setattr(sealed.agent, "fetch_archive", fetched_by_another_round_meanwhile)
    archive.collect_instance(sealed.services, source)
    with sealed.services.db.session() as session:
        row = session.scalars(select(ArchiveSegment)).one()
    assert (row.size_bytes, row.checksum) == storage.checksum(key)
