"""Only the control plane gets in: an agent refuses plaintext, callers without a
certificate, certificates of another CA or of another instance, and the control plane
refuses an agent whose certificate names another instance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cellar import agent_tls, pki
from cellar.agent_reads import CHANNEL_OPTIONS
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from tests.unit.guestagent.support import FakeEngine, Served
from tests.unit.guestagent.tls import INSTANCE, Tls, make_tls


def status(channel: grpc.Channel) -> Any:
    return agent_pb2_grpc.GuestAgentStub(channel).GetStatus(agent_pb2.GetStatusRequest(), timeout=3)


def databases(channel: grpc.Channel) -> Any:
    return agent_pb2_grpc.GuestAgentStub(channel).ListDatabases(
        agent_pb2.ListDatabasesRequest(), timeout=3
    )


def health(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def refused(call: Callable[[grpc.Channel], Any], channel: grpc.Channel) -> grpc.StatusCode:
    with channel, pytest.raises(grpc.RpcError) as caught:
        call(channel)
    return caught.value.code()


def presenting(port: int, issued: pki.Issued | None, ca: bytes, name: str) -> grpc.Channel:
    key, chain = (issued.key, issued.certificate) if issued else (None, None)
    credentials = grpc.ssl_channel_credentials(ca, key, chain)
    options = (*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", name))
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


def test_the_control_plane_may_call_everything(served: Served, tls: Tls) -> None:
    assert health(served.channel).status == health_pb2.HealthCheckResponse.SERVING
    assert status(served.channel).engine == "fake"
    assert databases(served.channel) is not None


def test_a_plaintext_channel_is_refused(served: Served) -> None:
    plain = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    assert refused(status, plain) == grpc.StatusCode.UNAVAILABLE


def test_a_channel_without_a_client_certificate_is_refused(served: Served, tls: Tls) -> None:
    anonymous = presenting(served.port, None, tls.authority.pem, pki.agent_name(INSTANCE))
    assert refused(status, anonymous) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_of_another_authority_is_refused(
    served: Served, tls: Tls, tmp_path: Path
) -> None:
    stranger = pki.Authority.from_home(tmp_path / "elsewhere")
    forged = stranger.issue(agent_tls.CONTROL_PLANE, client=True)
    channel = presenting(served.port, forged, tls.authority.pem, pki.agent_name(INSTANCE))
    assert refused(status, channel) == grpc.StatusCode.UNAVAILABLE


def test_another_instances_certificate_may_call_nothing(served: Served, tls: Tls) -> None:
    other = tls.authority.agent("inst-other")
    for call in (status, databases, health):
        channel = presenting(served.port, other, tls.authority.pem, pki.agent_name(INSTANCE))
        assert refused(call, channel) == grpc.StatusCode.PERMISSION_DENIED


def test_the_agents_own_certificate_reads_its_health_alone(served: Served, tls: Tls) -> None:
    own = tls.authority.agent(INSTANCE)

    def own_channel() -> grpc.Channel:
        return presenting(served.port, own, tls.authority.pem, pki.agent_name(INSTANCE))

    with own_channel() as channel:
        assert status(channel).engine == "fake"
        assert health(channel).status == health_pb2.HealthCheckResponse.SERVING
    assert refused(databases, own_channel()) == grpc.StatusCode.PERMISSION_DENIED


def test_an_agent_that_is_not_the_instance_meant_is_refused(served: Served, tls: Tls) -> None:
    assert refused(status, tls.channel(served.port, "inst-other")) == grpc.StatusCode.UNAVAILABLE


def test_a_renewed_certificate_is_served_without_a_restart(
    fake: FakeEngine, tmp_path: Path
) -> None:
    from guestagent.server import AgentServer

    tls = make_tls(tmp_path)
    server = AgentServer(fake, tls.server(), host="127.0.0.1", port=0)
    port = server.start(resume_engine=False)
    try:
        with tls.channel(port) as channel:
            assert status(channel).engine == "fake"
        renamed = tls.authority.issue(
            agent_tls.AGENT + INSTANCE, ["renamed.agent.cellar"], server=True, client=True
        )
        pki.write_agent_files(tls.folder, renamed, tls.authority.pem)
        channel = presenting(
            port, tls.client.current()[0], tls.authority.pem, "renamed.agent.cellar"
        )
        with channel:
            assert status(channel).engine == "fake"
        assert refused(status, tls.channel(port)) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=0)
