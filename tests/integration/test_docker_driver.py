"""The Docker driver against the real engine: every ensure_* finds its own earlier work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from cellar import catalog, pki
from taskmanager.drivers.base import ContainerSpec
from taskmanager.drivers.docker import (
    CAPABILITIES,
    PIDS_LIMIT,
    TLS_PATH,
    DockerDriver,
    ImageMissing,
    container_name,
    created,
    network_name,
    spool_name,
    volume_name,
)
from tests.integration.stack import leftovers, remove_leftovers


@pytest.fixture
def project(stack: object) -> Iterator[str]:  # the stack's metadata names the leftovers
    name = f"drv-{uuid.uuid4().hex[:10]}"
    yield name
    remove_leftovers(name)


def spec(project: str, image: str = "cellar/postgresql:15", tls_dir: str = "") -> ContainerSpec:
    instance_id = str(uuid.uuid4())
    if tls_dir:
        authority = pki.Authority.from_home(Path(tls_dir).parent)
        pki.write_agent_files(Path(tls_dir), authority.agent(instance_id), authority.pem)
    return ContainerSpec(
        instance_id=instance_id,
        project_id=project,
        image=image,
        memory_mb=256,
        vcpus=0.5,
        engine_port=5432,
        agent_port=catalog.AGENT_PORT,
        data_path="/var/lib/cellar/data",
        publish_host="127.0.0.1",
        tls_dir=tls_dir,
    )


def test_ensure_is_idempotent_and_remove_cleans_up(project: str, tmp_path: Path) -> None:
    driver = DockerDriver()
    wanted = spec(project, tls_dir=str(tmp_path / "agent"))
    assert driver.ensure_network(project) == driver.ensure_network(project)
    driver.ensure_volume(wanted.instance_id, project, 1)
    driver.ensure_volume(wanted.instance_id, project, 1)
    first = driver.ensure_container(wanted)
    again = driver.ensure_container(wanted)
    assert first == again
    assert first.engine != first.agent
    container = docker.from_env().containers.get(container_name(wanted.instance_id))
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 256 * 1024 * 1024
    assert (host_config["CpuQuota"], host_config["CpuPeriod"]) == (50_000, 100_000)
    assert container.labels["cellar.project"] == project
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(CAPABILITIES)
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["PidsLimit"] == PIDS_LIMIT
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts[TLS_PATH]["RW"] is False
    assert mounts["/var/lib/cellar"]["Name"] == spool_name(wanted.instance_id)
    assert mounts["/var/lib/cellar/data"]["Name"] == volume_name(wanted.instance_id)
    assert host_config["ReadonlyRootfs"] is True
    assert sorted(host_config["Tmpfs"]) == ["/run", "/tmp"]
    written = container.exec_run(["sh", "-c", "touch /usr/proof || true; touch /run/ok"])
    assert b"Read-only file system" in written.output, written.output
    assert container.exec_run(["test", "-e", "/run/ok"]).exit_code == 0
    agent_binding = container.attrs["NetworkSettings"]["Ports"][f"{catalog.AGENT_PORT}/tcp"][0]
    assert agent_binding["HostIp"] == "127.0.0.1"
    assert driver.container_state(wanted.instance_id) == "running"
    container.restart(timeout=5)
    assert driver.published_ports(wanted.instance_id, 5432, catalog.AGENT_PORT) == first

    assert driver.remove_container(wanted.instance_id) is True
    assert driver.remove_container(wanted.instance_id) is False
    assert driver.remove_volume(wanted.instance_id) is True
    assert driver.remove_volume(wanted.instance_id) is False
    assert driver.remove_network_if_unused(project) is True
    assert leftovers(project) == []
    names = [v.name for v in docker.from_env().volumes.list()]
    assert not {volume_name(wanted.instance_id), spool_name(wanted.instance_id)} & set(names)


def test_a_missing_image_is_reported_as_such(project: str) -> None:
    driver = DockerDriver()
    wanted = spec(project, image="cellar/no-such-image:0")
    driver.ensure_network(project)
    with pytest.raises(ImageMissing, match="image not found"):
        driver.ensure_container(wanted)


def test_workers_creating_a_project_network_at_once_settle_on_one(project: str) -> None:
    client = docker.from_env()
    name = network_name(project)
    # two networks of one name, as two workers racing to create it would leave
    made = [client.networks.create(name, labels={"cellar.project": project}) for _ in range(2)]
    oldest = min(made, key=lambda n: (created(n.attrs["Created"]), n.id)).id
    with ThreadPoolExecutor(4) as pool:
        chosen = set(pool.map(lambda _: DockerDriver().ensure_network(project), range(4)))
    assert chosen == {oldest}
    assert [n.id for n in client.networks.list(names=[name])] == [oldest]
    assert DockerDriver().remove_network_if_unused(project) is True
    assert client.networks.list(names=[name]) == []
