"""What the task manager needs from a compute driver."""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    instance_id: str
    project_id: str
    image: str
    memory_mb: int
    vcpus: float
    engine_port: int
    agent_port: int
    data_path: str
    publish_host: str
    request_id: str = "-"
    tls_dir: str = ""  # the host folder of the agent's certificate, mounted read-only
    allowed_cidrs: tuple[str, ...] = ()  # who may reach the engine port; () is anyone


@dataclasses.dataclass(frozen=True)
class Ports:
    """The host ports where the engine and the agent are published."""

    engine: int
    agent: int


class ComputeDriver(Protocol):
    def ensure_network(self, project_id: str) -> str: ...

    def ensure_volume(self, instance_id: str, project_id: str, size_gb: int) -> str: ...

    def ensure_container(self, spec: ContainerSpec) -> Ports: ...

    def container_state(self, instance_id: str) -> str | None: ...

    def published_ports(
        self, instance_id: str, engine_port: int, agent_port: int
    ) -> Ports | None: ...

    def update_limits(self, instance_id: str, memory_mb: int, vcpus: float) -> None: ...

    def start_container(self, instance_id: str) -> bool: ...

    def stop_container(self, instance_id: str) -> bool: ...

    def remount_volume(self, instance_id: str) -> bool: ...

    def grow_volume(self, instance_id: str, size_gb: int, offline: bool = False) -> None: ...

    def remove_container(self, instance_id: str) -> bool: ...

    def remove_volume(self, instance_id: str) -> bool: ...

    def remove_network_if_unused(self, project_id: str) -> bool: ...
