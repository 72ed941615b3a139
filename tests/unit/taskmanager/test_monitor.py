from __future__ import annotations

import datetime as dt
from typing import Any

from cellar.errors import AgentTimeout
from cellar.models import Instance, utcnow
from taskmanager import monitor


def active_instance(services: Any, compute: Any) -> str:
    with services.db.session() as session:
        instance = Instance(
            project_id="p1",
            name="db",
            flavor_id="2",
            datastore="postgresql",
            datastore_version="15",
            volume_size=1,
            status="ACTIVE",
            operating_status="HEALTHY",
            agent_port=40001,
        )
        session.add(instance)
        session.flush()
        compute.containers[instance.id] = object()
        return instance.id


def operating(services: Any, instance_id: str) -> str:
    with services.db.session() as session:
        return str(session.get(Instance, instance_id).operating_status)


def test_reports_map_to_operating_status_without_touching_updated(world: Any) -> None:
    services, compute, agent, _queue = world
    instance_id = active_instance(services, compute)
    with services.db.session() as session:
        before = session.get(Instance, instance_id).updated
    assert monitor.check_health(services) == 0
    with services.db.session() as session:
        instance = session.get(Instance, instance_id)
        assert instance.health_checked_at is not None
        assert instance.updated == before
    agent.prepare_status = "FAILED"
    assert monitor.check_health(services) == 1
    assert operating(services, instance_id) == "ERROR"


def test_a_silent_agent_is_never_left_healthy(world: Any, monkeypatch: Any) -> None:
    services, compute, agent, _queue = world
    instance_id = active_instance(services, compute)

    def mute(timeout: float | None = None) -> tuple[str, str]:
        raise AgentTimeout("no answer")

    monkeypatch.setattr(agent, "status", mute)
    assert monitor.check_health(services) == 0  # within the grace period
    assert operating(services, instance_id) == "HEALTHY"
    with services.db.session() as session:
        instance = session.get(Instance, instance_id)
        instance.health_checked_at = utcnow() - dt.timedelta(minutes=5)
    assert monitor.check_health(services) == 1
    assert operating(services, instance_id) == "ERROR"  # container runs, agent mute
    del compute.containers[instance_id]
    assert monitor.check_health(services) == 1
    assert operating(services, instance_id) == "SHUTDOWN"


def test_a_restarted_container_is_followed_to_its_new_ports(world: Any, monkeypatch: Any) -> None:
    from taskmanager.drivers.base import Ports

    services, compute, agent, _queue = world
    instance_id = active_instance(services, compute)
    compute.ports = Ports(engine=41000, agent=41001)

    def mute(timeout: float | None = None) -> tuple[str, str]:
        raise AgentTimeout("no answer")

    monkeypatch.setattr(agent, "status", mute)
    monitor.check_health(services)
    with services.db.session() as session:
        instance = session.get(Instance, instance_id)
        assert (instance.port, instance.agent_port) == (41000, 41001)
        assert instance.operating_status == "HEALTHY"
