"""The steps ``provision_restore`` adds: check_backups and restore_data (and its prepare)."""

from __future__ import annotations

import json

import pytest

from cellar.errors import AgentError
from cellar.models import ArchiveSegment, Backup, Instance, utcnow
from cellar.workflows import WorkflowName
from taskmanager.archive import archive_key
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


def restoring(world: World, chain: list[str], **restore: object) -> tuple[str, str]:
    instance_id = add_instance(world, status="BUILD", running=True)
    task_id = add_task(
        world,
        WorkflowName.PROVISION_RESTORE,
        instance_id,
        params={"databases": [], "users": [], "restore": {"chain": chain, **restore}},
    )
    return instance_id, task_id


def segment(world: World, source_id: str, name: str, data: bytes) -> str:
    """An archive file of ``source_id`` in storage, and its row."""
    source = load(world, Instance, source_id)
    with world.services.storage.writer(archive_key(source, name)) as out:
        out.write(data)
    with world.services.db.session() as session:
        row = ArchiveSegment(
            project_id=source.project_id,
            instance_id=source.id,
            name=name,
            size_bytes=out.written.size,
            checksum=out.written.checksum,
            closed_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def overwrite(world: World, backup_id: str, data: bytes) -> None:
    with world.services.storage.writer(storage_key(load(world, Backup, backup_id))) as out:
        out.write(data)


def test_check_backups_of_an_instance_not_made_from_a_backup_returns_next(world: World) -> None:
    instance_id = add_instance(world, status="BUILD", running=False)
    task_id = add_task(world, WorkflowName.PROVISION_RESTORE, instance_id, params={})
    assert run(world, task_id, "check_backups") is NEXT


def test_check_backups_returns_next_when_every_backup_matches_its_sha256(world: World) -> None:
    source = add_instance(world)
    full = stored_backup(world, source, b"full")
    incremental = stored_backup(world, source, b"increment", parent_id=full)
    _instance_id, task_id = restoring(world, [full, incremental])
    assert run(world, task_id, "check_backups") is NEXT
    assert world.agent.restores == []  # nothing restored yet


def test_check_backups_fails_for_a_backup_that_is_not_completed(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source, status="BUILDING")
    _instance_id, task_id = restoring(world, [backup])
    with pytest.raises(StepFailed, match=f"backup {backup} is BUILDING, not COMPLETED"):
        run(world, task_id, "check_backups")


def test_check_backups_fails_for_a_deleted_backup(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source)
    change(world, Backup, backup, deleted_at=utcnow())
    _instance_id, task_id = restoring(world, [backup])
    with pytest.raises(StepFailed, match=f"backup {backup} was deleted"):
        run(world, task_id, "check_backups")


def test_check_backups_fails_when_the_file_is_missing_from_storage(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source)
    world.services.storage.delete(storage_key(load(world, Backup, backup)))
    _instance_id, task_id = restoring(world, [backup])
    with pytest.raises(StepFailed, match=f"backup {backup} cannot be restored: .* is missing"):
        run(world, task_id, "check_backups")


def test_check_backups_fails_for_a_damaged_file_before_anything_is_created(
    world: World,
) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source, b"the real bytes")
    overwrite(world, backup, b"rot")
    _instance_id, task_id = restoring(world, [backup])
    with pytest.raises(StepFailed, match=f"backup {backup} is damaged: .*3 bytes.*14 bytes"):
        run(world, task_id, "check_backups")
    assert world.compute.calls == []


def test_check_backups_fails_when_archive_files_were_pruned(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source)
    _instance_id, task_id = restoring(world, [backup], archive=["gone-segment-id"])
    with pytest.raises(StepFailed, match="archive files of this restore were pruned"):
        run(world, task_id, "check_backups")


def test_check_backups_fails_for_a_damaged_archive_file(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source)
    wal = segment(world, source, "000000010000000000000002", b"wal")
    change(world, ArchiveSegment, wal, checksum="0" * 64)
    _instance_id, task_id = restoring(world, [backup], archive=[wal])
    with pytest.raises(StepFailed, match="archive file 000000010000000000000002 is damaged"):
        run(world, task_id, "check_backups")


def test_check_backups_fails_for_an_archive_file_of_an_unknown_instance(world: World) -> None:
    source = add_instance(world)
    backup = stored_backup(world, source)
    wal = segment(world, source, "000000010000000000000002", b"wal")
    change(world, ArchiveSegment, wal, instance_id="no-such-instance")
    _instance_id, task_id = restoring(world, [backup], archive=[wal])
    with pytest.raises(StepFailed, match=r"the instance of archive file \d+ is unknown"):
        run(world, task_id, "check_backups")


def test_restore_data_of_an_instance_not_made_from_a_backup_restores_nothing(
    world: World,
) -> None:
    instance_id = add_instance(world, status="BUILD")
    task_id = add_task(world, WorkflowName.PROVISION_RESTORE, instance_id, params={})
    assert run(world, task_id, "restore_data") is NEXT
    assert world.agent.restores == []


def test_restore_data_streams_the_chain_full_first_and_returns_next(world: World) -> None:
    source = add_instance(world)
    full = stored_backup(world, source, b"full")
    incremental = stored_backup(world, source, b"increment", parent_id=full)
    _instance_id, task_id = restoring(world, [full, incremental])
    assert run(world, task_id, "restore_data") is NEXT
    assert world.agent.restores == [
        ("full", 0, "tar", b"full"),
        ("incremental", 1, "tar", b"increment"),
    ]


def test_restore_data_replays_the_archive_after_the_backups(world: World) -> None:
    source = add_instance(world)
    full = stored_backup(world, source, b"full")
    wal = segment(world, source, "000000010000000000000002", b"wal-2")
    _instance_id, task_id = restoring(world, [full], archive=[wal], restore_time="2030-01-01")
    assert run(world, task_id, "restore_data") is NEXT
    assert world.agent.restores == [
        ("full", 0, "tar", b"full"),
        ("archive:000000010000000000000002", 1, "wal", b"wal-2"),
    ]


def test_restore_data_replays_the_wal_an_incremental_manifest_names(world: World) -> None:
    source = add_instance(world)
    full = stored_backup(world, source, b"full")
    wal = segment(world, source, "000000010000000000000003", b"wal-3")
    manifest = json.dumps({"segments": [{"id": wal, "name": "000000010000000000000003"}]})
    incremental = stored_backup(
        world, source, manifest.encode(), parent_id=full, format="wal-manifest"
    )
    _instance_id, task_id = restoring(world, [full, incremental])
    assert run(world, task_id, "check_backups") is NEXT
    assert run(world, task_id, "restore_data") is NEXT
    assert world.agent.restores == [
        ("full", 0, "tar", b"full"),
        ("archive:000000010000000000000003", 1, "wal", b"wal-3"),
    ]


def test_restore_data_fails_when_the_agent_refuses_a_backup(world: World) -> None:
    world.agent.failing["restore"] = AgentError("no space left on device")
    source = add_instance(world)
    full = stored_backup(world, source)
    _instance_id, task_id = restoring(world, [full])
    with pytest.raises(StepFailed, match=f"restoring backup {full} failed: no space left"):
        run(world, task_id, "restore_data")


def test_restore_data_fails_when_the_file_changed_after_it_was_checked(world: World) -> None:
    source = add_instance(world)
    full = stored_backup(world, source, b"as taken")
    _instance_id, task_id = restoring(world, [full])
    assert run(world, task_id, "check_backups") is NEXT
    overwrite(world, full, b"as changed")
    with pytest.raises(StepFailed, match=f"backup {full} changed while it was restored"):
        run(world, task_id, "restore_data")


def test_restore_data_fails_when_the_file_went_missing_after_it_was_checked(
    world: World,
) -> None:
    source = add_instance(world)
    full = stored_backup(world, source)
    _instance_id, task_id = restoring(world, [full])
    assert run(world, task_id, "check_backups") is NEXT
    world.services.storage.delete(storage_key(load(world, Backup, full)))
    with pytest.raises(StepFailed, match="is missing from storage"):
        run(world, task_id, "restore_data")


def test_prepare_after_a_restore_tells_the_agent_the_data_and_the_restore_time(
    world: World,
) -> None:
    source = add_instance(world)
    full = stored_backup(world, source)
    instance_id, task_id = restoring(world, [full], restore_time="2030-01-01T00:00:00Z")
    assert run(world, task_id, "prepare") is NEXT
    assert world.agent.restored_prepares == 1
    assert world.agent.restore_times == ["2030-01-01T00:00:00Z"]
    assert load(world, Instance, instance_id).status == "ACTIVE"
