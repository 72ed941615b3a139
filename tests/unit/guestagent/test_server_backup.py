"""Streaming calls around a fake engine: backups out, restores in, errors mid-stream."""

from __future__ import annotations

import grpc
import pytest

from cellar.guestagent.v1 import agent_pb2
from guestagent.engines.messages import BackupRequest, RestoreStart
from guestagent.errors import EngineError, Unsupported
from tests.unit.guestagent.support import FakeEngine, Served


def test_backup_streams_every_chunk_then_where_it_ends(served: Served, fake: FakeEngine) -> None:
    request = agent_pb2.BackupRequest(backup_id="b1", type="incremental", parent_checkpoint="7")
    replies = list(served.stub.Backup(request, timeout=5))

    assert [r.data for r in replies[:-1]] == [b"first", b"second"]
    assert not replies[-1].data
    assert (replies[-1].done.checkpoint, replies[-1].done.format) == ("cp-1", "fake")
    assert ("backup", BackupRequest("b1", "incremental", "7")) in fake.calls


def test_an_error_while_streaming_ends_the_call_with_its_status(
    served: Served, fake: FakeEngine
) -> None:
    fake.failures["backup"] = Unsupported("fake engines keep no incrementals")
    with pytest.raises(grpc.RpcError) as caught:
        list(served.stub.Backup(agent_pb2.BackupRequest(backup_id="b1"), timeout=5))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no incrementals" in str(caught.value.details())

    fake.failures["backup"] = EngineError("disk went away")
    with pytest.raises(grpc.RpcError) as caught:
        list(served.stub.Backup(agent_pb2.BackupRequest(backup_id="b1"), timeout=5))
    assert caught.value.code() == grpc.StatusCode.INTERNAL


def test_restore_takes_its_start_then_the_bytes(served: Served, fake: FakeEngine) -> None:
    start = agent_pb2.RestoreStart(format="fake", type="full", position=0)
    messages = [
        agent_pb2.RestoreChunk(start=start, data=b"ab"),
        agent_pb2.RestoreChunk(data=b"cd"),
        agent_pb2.RestoreChunk(data=b"e"),
    ]
    reply = served.stub.Restore(iter(messages), timeout=5)

    assert reply.bytes == 5
    assert fake.restored_bytes == b"abcde"
    assert ("restore", RestoreStart("fake", "full", 0)) in fake.calls


def test_restore_without_its_start_is_refused(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.Restore(iter([agent_pb2.RestoreChunk(data=b"x")]), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_consistency_check_reports_the_engines_verdict(served: Served) -> None:
    reply = served.stub.CheckConsistency(agent_pb2.CheckConsistencyRequest(), timeout=5)
    assert (reply.ok, reply.detail) == (True, "fake data is fine")


def test_an_engine_without_an_archive_lists_none_and_refuses_fetches(served: Served) -> None:
    listed = served.stub.ListArchive(agent_pb2.ListArchiveRequest(rotate=True), timeout=5)
    assert list(listed.files) == []
    with pytest.raises(grpc.RpcError) as caught:
        list(served.stub.FetchArchive(agent_pb2.FetchArchiveRequest(name="x"), timeout=5))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    removed = served.stub.RemoveArchive(agent_pb2.RemoveArchiveRequest(names=["x"]), timeout=5)
    assert removed.removed == 0
