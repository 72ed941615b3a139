"""A real instance's agent, reached at its published port: plaintext, no certificate,
another instance's certificate and a control plane expecting another instance are all
refused, and the control plane gets in. Its container holds no more than the engine
needs: run as the database's superuser, a shell gains nothing outside its own files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import grpc
import pytest

from cellar import agent_tls, pki
from cellar.agent_reads import CHANNEL_OPTIONS
from cellar.catalog import AGENT_PORT
from cellar.guestagent.v1 import agent_pb2, agent_pb2_grpc
from taskmanager.drivers.docker import CAPABILITIES, PIDS_LIMIT
from tests.integration.engines import session
from tests.integration.stack import Api, Stack


@pytest.fixture(scope="module")
def instance(stack: Stack) -> Iterator[dict[str, Any]]:
    api = Api(stack.url, identity=stack.identity)
    body = {"name": "guarded", "flavorRef": "1", "volume": {"size": 1}}
    made = api.call("POST", "/instances", json={"instance": body})
    assert made.status_code == 202, made.text
    view = api.wait_instance(made.json()["instance"]["id"], {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    try:
        yield {"api": api, "view": view}
    finally:
        api.call("DELETE", f"/instances/{view['id']}")
        api.wait_instance(view["id"], {"GONE", "ERROR"})


def agent_port(instance_id: str) -> int:
    container = docker.from_env().containers.get(f"cellar-{instance_id}")
    return int(container.attrs["NetworkSettings"]["Ports"][f"{AGENT_PORT}/tcp"][0]["HostPort"])


def status(channel: grpc.Channel) -> Any:
    with channel:
        stub = agent_pb2_grpc.GuestAgentStub(channel)
        return stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5)


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        status(channel)
    return caught.value.code()


def secure(port: int, ca: bytes, issued: pki.Issued | None, name: str) -> grpc.Channel:
    key, chain = (issued.key, issued.certificate) if issued else (None, None)
    options = (*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", name))
    credentials = grpc.ssl_channel_credentials(ca, key, chain)
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


def test_only_the_control_plane_reaches_the_agent(stack: Stack, instance: dict[str, Any]) -> None:
    instance_id = instance["view"]["id"]
    port = agent_port(instance_id)
    authority = pki.Authority.from_home(stack.home)
    control = authority.control_plane()
    name = agent_tls.agent_name(instance_id)
    assert status(secure(port, authority.pem, control, name)).status == agent_pb2.HEALTHY
    assert refused(grpc.insecure_channel(f"127.0.0.1:{port}")) == grpc.StatusCode.UNAVAILABLE
    assert refused(secure(port, authority.pem, None, name)) == grpc.StatusCode.UNAVAILABLE
    other = authority.agent("another-instance")
    assert refused(secure(port, authority.pem, other, name)) == grpc.StatusCode.PERMISSION_DENIED
    elsewhere = agent_tls.agent_name("another-instance")
    assert refused(secure(port, authority.pem, control, elsewhere)) == grpc.StatusCode.UNAVAILABLE


def test_the_container_is_hardened_and_the_superuser_gains_nothing(
    instance: dict[str, Any],
) -> None:
    api, view = instance["api"], instance["view"]
    container = docker.from_env().containers.get(f"cellar-{view['id']}")
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(CAPABILITIES)
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["ReadonlyRootfs"] is True
    root = api.call("POST", f"/instances/{view['id']}/root").json()["user"]
    shell = (
        "(id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
        "cat /etc/cellar/tls/agent.key 2>&1 | head -c 200; ls /etc/cellar/tls 2>&1; "
        "cat /proc/1/environ 2>&1 | head -c 100; touch /var/lib/postgresql/proof 2>&1; "
        "echo end) | tr '\\t\\\\' '  '"
    )
    with session("postgresql", view["connection"], root["name"], root["password"]) as conn:
        conn.execute("CREATE TEMP TABLE seen (line text)")
        conn.execute(f"COPY seen FROM PROGRAM $${shell}$$")
        lines = [row[0] for row in conn.execute("SELECT line FROM seen")]
    text = "\n".join(lines)
    assert lines[0] == "999", text  # the engine's own user, not root
    assert "CapEff: 0000000000000000" in text and "NoNewPrivs: 1" in text, text
    assert "PRIVATE KEY" not in text and text.count("Permission denied") >= 3, text
    assert "Read-only file system" in text, text  # not even the engine user's own home
    assert lines[-1] == "end"


def test_a_symlink_the_superuser_plants_is_not_followed_by_the_agent(
    instance: dict[str, Any],
) -> None:
    api, view = instance["api"], instance["view"]
    container = docker.from_env().containers.get(f"cellar-{view['id']}")
    root = api.call("POST", f"/instances/{view['id']}/root").json()["user"]
    with session("postgresql", view["connection"], root["name"], root["password"]) as conn:
        pgdata = conn.execute("SHOW data_directory").fetchone()[0]
        # the file the agent rewrites for a configuration group, made a link to a root path
        plant = f"ln -sfn /etc/cellar-proof {pgdata}/cellar-user.conf"
        conn.execute(f"COPY (SELECT 1) TO PROGRAM $${plant}$$")
    assert container.exec_run(["test", "-L", f"{pgdata}/cellar-user.conf"]).exit_code == 0

    made = api.call("POST", "/configurations", json={"configuration": {
        "name": "bait", "values": {"work_mem": 8192},
        "datastore": {"type": "postgresql", "version": "15"}}})  # fmt: skip
    assert made.status_code == 200, made.text
    config_id = made.json()["configuration"]["id"]
    attach = {"instance": {"configuration": config_id}}
    assert api.call("PUT", f"/instances/{view['id']}", json=attach).status_code == 202
    for task in api.instance_tasks(view["id"]):
        if task["state"] == "RUNNING":
            api.wait_task(task["id"], within=120)
    # the root-run agent refused the link and wrote nothing through it
    tasks = api.instance_tasks(view["id"])
    assert any(t["state"] == "FAILED" and "is a symlink" in str(t) for t in tasks), tasks
    assert container.exec_run(["test", "-e", "/etc/cellar-proof"]).exit_code == 1
    detach = {"instance": {"configuration": None}}
    api.call("PUT", f"/instances/{view['id']}", json=detach)
    for task in api.instance_tasks(view["id"]):
        if task["state"] == "RUNNING":
            api.wait_task(task["id"], within=120)
    api.call("DELETE", f"/configurations/{config_id}")
