from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from cellar.errors import ComputeError
from cellar.models import Instance, Task
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager import monitor
from taskmanager.drivers.base import ContainerSpec
from taskmanager.drivers.docker import DockerDriver
from taskmanager.drivers.volumes import (
    GIB,
    LoopVolumes,
    OnlineResizeRefused,
    VolumeBusy,
    VolumeNotResizable,
    run_tool,
)
from tests.unit.fakes import NetworksApi


class FakeHost:
    """The host's mount table and loop devices, changed by the tools it is asked to run."""

    def __init__(self, mounts: Path) -> None:
        self.mounts = mounts
        self.mounts.write_text("proc /proc proc rw 0 0\n")
        self.calls: list[str] = []
        self.attached: dict[str, str] = {}  # loop device -> image file
        self.refuse_online = False
        self.held = False  # something else keeps the file system open

    def __call__(self, argv: Sequence[str], ok: Sequence[int] = (0,)) -> str:
        tool, args = argv[0], list(argv[1:])
        self.calls.append(" ".join([tool, *(a for a in args if a.startswith("-"))]))
        if tool == "mount":
            image, where = args[-2], args[-1]
            device = f"/dev/loop{len(self.attached)}"
            self.attached[device] = image
            escaped = where.replace(" ", "\\040")
            self.mounts.write_text(self.mounts.read_text() + f"{device} {escaped} ext4 rw 0 0\n")
        elif tool == "umount":
            escaped = args[0].replace(" ", "\\040")
            lines = self.mounts.read_text().splitlines()
            gone = [line for line in lines if line.split()[1] == escaped]
            self.mounts.write_text("".join(f"{line}\n" for line in lines if line not in gone))
            if not self.held:  # mount -o loop detaches its device on unmount
                for line in gone:
                    self.attached.pop(line.split()[0], None)
        elif tool == "losetup" and args[0] == "-j":
            return "".join(
                f"{dev}: [65024]:12 ({image})\n"
                for dev, image in self.attached.items()
                if image == args[1]
            )
        elif tool == "losetup" and args[0] == "-d" and not self.held:
            self.attached.pop(args[1], None)
        elif tool == "resize2fs" and args[0].startswith("/dev/") and self.refuse_online:
            raise ComputeError("resize2fs failed: Permission denied to resize filesystem")
        return ""

    def tools(self) -> list[str]:
        return [call.split()[0] for call in self.calls]


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path / "mounts")


def volumes_in(root: Path, host: FakeHost) -> LoopVolumes:
    return LoopVolumes(root, run=host, mounts=host.mounts)


def test_a_volume_is_a_sparse_formatted_mounted_file_made_once(
    tmp_path: Path, host: FakeHost
) -> None:
    volumes = volumes_in(tmp_path / "cellar home" / "volumes", host)
    data = volumes.ensure("i1", 2)
    image = volumes.image("i1")
    assert image.stat().st_size == 2 * GIB
    assert image.stat().st_blocks * 512 < 1024 * 1024  # sparse: nothing written yet
    assert host.calls == ["mkfs.ext4 -q -F -m", "mount -o"]
    assert volumes.device("i1") == "/dev/loop0"
    assert data == volumes.mount_point("i1") / "data" and data.is_dir()
    host.calls.clear()
    assert volumes.ensure("i1", 2) == data
    assert host.calls == []  # found its earlier work
    assert not volumes.image("i1").with_name("i1.img.new").exists()


def test_a_lost_mount_is_made_again_only_when_missing(tmp_path: Path, host: FakeHost) -> None:
    volumes = volumes_in(tmp_path, host)
    assert volumes.remount("nothing") is False  # no image: nothing to mount
    volumes.ensure("i1", 1)
    assert volumes.remount("i1") is False
    host.mounts.write_text("")  # the host restarted
    host.attached.clear()
    host.calls.clear()
    assert volumes.remount("i1") is True
    assert host.tools() == ["mount"]
    assert volumes.remount("i1") is False


def test_online_growth_grows_file_device_and_file_system(tmp_path: Path, host: FakeHost) -> None:
    volumes = volumes_in(tmp_path, host)
    volumes.ensure("i1", 1)
    host.calls.clear()
    volumes.grow("i1", 3)
    assert volumes.image("i1").stat().st_size == 3 * GIB
    assert host.calls == ["losetup -c", "resize2fs"]
    volumes.grow("i1", 2)  # never shrinks the file
    assert volumes.image("i1").stat().st_size == 3 * GIB


def test_a_refused_online_growth_is_said_so(tmp_path: Path, host: FakeHost) -> None:
    volumes = volumes_in(tmp_path, host)
    volumes.ensure("i1", 1)
    host.refuse_online = True
    with pytest.raises(OnlineResizeRefused, match="Permission denied"):
        volumes.grow("i1", 2)
    with pytest.raises(VolumeNotResizable):
        volumes.grow("other", 2)


def test_offline_growth_unmounts_checks_grows_and_mounts_again(
    tmp_path: Path, host: FakeHost
) -> None:
    volumes = volumes_in(tmp_path, host)
    volumes.ensure("i1", 1)
    host.calls.clear()
    volumes.grow("i1", 2, offline=True)
    assert host.tools() == ["umount", "losetup", "losetup", "e2fsck", "resize2fs", "mount"]
    assert volumes.device("i1") is not None
    assert volumes.image("i1").stat().st_size == 2 * GIB


def test_offline_growth_refuses_a_file_system_still_in_use(tmp_path: Path, host: FakeHost) -> None:
    volumes = volumes_in(tmp_path, host)
    volumes.ensure("i1", 1)
    host.held = True  # e.g. a container still running on it
    host.calls.clear()
    with pytest.raises(VolumeBusy, match="still in use"):
        volumes.grow("i1", 2, offline=True)
    assert "resize2fs" not in host.tools() and "e2fsck" not in host.tools()
    assert "mount" not in host.tools()  # never mounted twice


def test_remove_unmounts_deletes_and_finds_nothing_the_second_time(
    tmp_path: Path, host: FakeHost
) -> None:
    volumes = volumes_in(tmp_path, host)
    volumes.ensure("i1", 1)
    (volumes.data_dir("i1") / "pgdata").mkdir()
    assert volumes.remove("i1") is True
    assert not volumes.image("i1").exists() and not volumes.mount_point("i1").exists()
    assert volumes.device("i1") is None and host.attached == {}
    host.calls.clear()
    assert volumes.remove("i1") is False
    assert host.calls == []


def test_tool_failures_carry_the_tools_message() -> None:
    with pytest.raises(ComputeError, match="sh failed: disk on fire"):
        run_tool(["sh", "-c", "echo starting; echo disk on fire >&2; exit 3"])
    assert run_tool(["sh", "-c", "exit 1"], ok=(0, 1)) == ""
    with pytest.raises(ComputeError, match="not installed"):
        run_tool(["no-such-tool-for-cellar"])


class FakeContainers:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        raise docker.errors.NotFound(f"no {name}")

    def create(self, image: str, **kwargs: Any) -> Any:
        self.created = kwargs
        raise docker.errors.APIError("stop here")


class FakeClient:
    def __init__(self) -> None:
        self.api = NetworksApi()
        self.containers = FakeContainers()
        self.volumes = FakeContainers()


def test_the_container_binds_the_folder_inside_the_mounted_volume(
    tmp_path: Path, host: FakeHost
) -> None:
    client = FakeClient()
    volumes = volumes_in(tmp_path, host)
    driver = DockerDriver(client=client, volumes=volumes)
    assert driver.ensure_volume("i1", "p1", 1) == str(volumes.data_dir("i1"))
    spec = ContainerSpec("i1", "p1", "cellar/postgresql:15", 512, 1.0, 5432, 50051,
                         "/var/lib/cellar/data", "127.0.0.1")  # fmt: skip
    with pytest.raises(ComputeError, match="stop here"):
        driver.ensure_container(spec)
    spool, mount = client.containers.created["mounts"]
    assert mount["Type"] == "bind"
    assert (mount["Source"], mount["Target"]) == (str(volumes.data_dir("i1")), spec.data_path)
    assert (spool["Type"], spool["Source"], spool["Target"]) == (
        "volume", "cellar-spool-i1", "/var/lib/cellar")  # fmt: skip
    assert spool["VolumeOptions"]["Labels"] == {"cellar.instance": "i1", "cellar.project": "p1"}
    assert client.containers.created["read_only"] is True
    assert "volumes" not in client.containers.created
    driver.grow_volume("i1", 2)
    with pytest.raises(VolumeNotResizable, match="not enforced"):
        DockerDriver(client=client).grow_volume("i1", 2)
    assert driver.remove_volume("i1") is True
    assert driver.remove_volume("i1") is False


def active_instance(services: Any, compute: Any, size: int = 1) -> str:
    with services.db.session() as session:
        instance = Instance(
            project_id="p1",
            name="db",
            flavor_id="2",
            datastore="postgresql",
            datastore_version="15",
            volume_size=size,
            status="ACTIVE",
            operating_status="HEALTHY",
            agent_port=40001,
        )
        session.add(instance)
        session.flush()
        compute.containers[instance.id] = object()
        compute.volumes.add(instance.id)
        return instance.id


def resize(services: Any, queue: Any, instance_id: str, size: int) -> Task:
    with services.db.session() as session:
        session.get(Instance, instance_id).status = "RESIZE"
        task = start_task(
            session,
            services.secrets,
            project_id="p1",
            workflow=WorkflowName.RESIZE_VOLUME,
            request_id="req-v",
            instance_id=instance_id,
            params={"size": size, "from_size": 1},
        )
        task_id = task.id
    queue(task_id, 0, "req-v")
    queue.drain(services)
    with services.db.session() as session:
        found = session.get(Task, task_id)
        session.expunge(found)
        return found


def load(services: Any, instance_id: str) -> Instance:
    with services.db.session() as session:
        instance = session.get(Instance, instance_id)
        session.expunge(instance)
        return instance


def test_resize_volume_grows_online_and_refreshes_usage(world: Any) -> None:
    services, compute, agent, queue = world
    instance_id = active_instance(services, compute)
    agent.volume_used_bytes, agent.volume_total_bytes = 300 * 1024**2, 2 * GIB
    task = resize(services, queue, instance_id, 2)
    assert (task.state, task.step) == ("COMPLETED", "mark_resized")
    assert [c for c in compute.calls if "container" in c or "grow" in c] == ["grow_volume 2"]
    instance = load(services, instance_id)
    assert (instance.status, instance.volume_size) == ("ACTIVE", 2)
    assert (instance.volume_used_bytes, instance.volume_total_bytes) == (300 * 1024**2, 2 * GIB)


def test_resize_volume_grows_offline_when_online_is_refused(world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id = active_instance(services, compute)
    compute.online_resize_refused = True
    task = resize(services, queue, instance_id, 3)
    assert task.state == "COMPLETED", task.error
    assert [c for c in compute.calls if "container" in c or "grow" in c] == [
        "grow_volume 3",
        "stop_container",
        "grow_volume 3 offline",
        "start_container",
    ]
    instance = load(services, instance_id)
    assert (instance.status, instance.volume_size) == ("ACTIVE", 3)


def test_a_failed_resize_leaves_the_instance_active_at_its_size(world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id = active_instance(services, compute)
    compute.online_resize_refused = True
    compute.grow_error = ComputeError("resize2fs failed: Bad magic number in super-block")
    task = resize(services, queue, instance_id, 2)
    assert task.state == "FAILED"
    assert "Bad magic number" in (task.error or "")
    instance = load(services, instance_id)
    assert (instance.status, instance.volume_size, instance.fault) == ("ACTIVE", 1, None)
    assert compute.calls[-1] == "start_container"  # running again, on its old volume


def test_the_monitor_stores_usage_without_touching_updated(world: Any) -> None:
    services, compute, agent, _queue = world
    instance_id = active_instance(services, compute)
    before = load(services, instance_id).updated
    monitor.check_health(services)
    assert load(services, instance_id).volume_used_bytes is None  # nothing reported yet
    agent.volume_used_bytes, agent.volume_total_bytes = 123_456_789, GIB
    monitor.check_health(services)
    instance = load(services, instance_id)
    assert (instance.volume_used_bytes, instance.volume_total_bytes) == (123_456_789, GIB)
    assert instance.updated == before


def test_the_monitor_mounts_a_lost_volume_and_starts_the_container(world: Any) -> None:
    services, compute, _agent, _queue = world
    instance_id = active_instance(services, compute)
    compute.unmounted.add(instance_id)
    compute.stopped.add(instance_id)
    assert monitor.remount_volumes(services) == 1
    assert compute.calls[-2:] == ["remount_volume", "start_container"]
    assert compute.stopped == set()
    assert monitor.remount_volumes(services) == 0


def test_offline_growth_waits_while_the_stopped_container_lets_go(world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id = active_instance(services, compute)
    compute.online_resize_refused = True
    grow = compute.grow_volume
    busy = [True]

    def held_once(instance_id: str, size_gb: int, offline: bool = False) -> None:
        if offline and busy:
            busy.pop()
            raise VolumeBusy("the volume of instance x is still in use (/dev/loop0)")
        grow(instance_id, size_gb, offline)

    compute.grow_volume = held_once
    task = resize(services, queue, instance_id, 2)
    assert task.state == "COMPLETED", task.error
    assert load(services, instance_id).volume_size == 2
