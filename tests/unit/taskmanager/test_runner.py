from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from cellar.errors import AgentError
from cellar.models import Instance, Secret, Task, utcnow
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager import runner


def provision(services: Any, **params: Any) -> tuple[str, str]:
    with services.db.session() as session:
        instance = Instance(
            project_id="p1",
            name="db",
            flavor_id="2",
            datastore="postgresql",
            datastore_version="15",
            volume_size=1,
        )
        session.add(instance)
        session.flush()
        task = start_task(
            session,
            services.secrets,
            project_id="p1",
            workflow=WorkflowName.PROVISION,
            request_id="req-1",
            instance_id=instance.id,
            params={
                "databases": [{"name": "shop"}],
                "users": [{"name": "al", "databases": ["shop"]}],
            },
            secret={"user:al": "pw-123456"},
        )
        return instance.id, task.id


def load(services: Any, model: Any, key: str) -> Any:
    with services.db.session() as session:
        return session.get(model, key)


def test_provision_runs_every_step_and_forgets_the_secret(world: Any) -> None:
    services, compute, agent, queue = world
    instance_id, task_id = provision(services)
    queue(task_id, 0, "req-1")
    queue.drain(services)
    instance = load(services, Instance, instance_id)
    task = load(services, Task, task_id)
    assert (instance.status, instance.operating_status) == ("ACTIVE", "HEALTHY")
    assert (instance.port, instance.agent_port) == (40000, 40001)
    assert task.state == "COMPLETED" and task.step == "prepare"
    assert load(services, Secret, task_id) is None
    databases, users, memory = agent.prepared[0]
    assert databases == ["shop"] and memory == 512
    assert users[0].password == "pw-123456" and users[0].databases == ("shop",)
    assert compute.containers[instance_id].image == "cellar/postgresql:15"


def test_a_rerun_step_finds_its_earlier_work(world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id, task_id = provision(services)
    queue(task_id, 0, "req-1")
    queue.drain(services, limit=2)
    # the worker died after start_container: the step runs again from the record
    with services.db.session() as session:
        session.get(Task, task_id).step = "start_container"
    queue(task_id, 0, "req-1")
    queue.drain(services)
    assert load(services, Instance, instance_id).status == "ACTIVE"
    assert list(compute.containers) == [instance_id]


def test_permanent_agent_error_puts_the_instance_in_error_with_fault(world: Any) -> None:
    services, _compute, agent, queue = world
    agent.prepare_error = AgentError("invalid user name", retryable=False)
    instance_id, task_id = provision(services)
    queue(task_id, 0, "req-1")
    queue.drain(services)
    instance = load(services, Instance, instance_id)
    assert instance.status == "ERROR"
    assert "invalid user name" in instance.fault
    assert load(services, Task, task_id).state == "FAILED"
    assert load(services, Secret, task_id) is None


def test_a_wait_past_its_deadline_ends_in_error(world: Any) -> None:
    services, _compute, agent, queue = world
    agent.prepare_error = AgentError("agent unavailable", retryable=True)
    instance_id, task_id = provision(services)
    queue(task_id, 0, "req-1")
    queue.drain(services, limit=6)
    with services.db.session() as session:
        task = session.get(Task, task_id)
        assert task.step == "prepare" and task.state == "RUNNING"
        task.step_started_at = utcnow() - dt.timedelta(hours=1)
    queue.drain(services)
    instance = load(services, Instance, instance_id)
    assert instance.status == "ERROR"
    assert "did not finish within 300 s" in instance.fault
    assert "agent unavailable" in instance.fault


def test_a_leased_task_is_not_run_twice(world: Any) -> None:
    services, compute, _agent, _queue = world
    _instance_id, task_id = provision(services)
    with services.db.session() as session:
        session.get(Task, task_id).lease_until = utcnow() + dt.timedelta(seconds=30)
    runner.run_step(services, task_id)
    assert compute.calls == []
    assert load(services, Task, task_id).step == ""  # never begun


def test_reconcile_requeues_only_overdue_unleased_tasks(world: Any) -> None:
    services, _compute, _agent, queue = world
    _, overdue = provision(services)
    _, leased = provision(services)
    _, fresh = provision(services)
    old = utcnow() - dt.timedelta(minutes=5)
    with services.db.session() as session:
        session.get(Task, overdue).next_run_at = old
        held = session.get(Task, leased)
        held.next_run_at = old
        held.lease_until = utcnow() + dt.timedelta(seconds=30)
    assert runner.reconcile(services) == 1
    assert [item[0] for item in queue.items] == [overdue]
    assert fresh not in [item[0] for item in queue.items]


def test_delete_cancels_provisioning_and_removes_everything(world: Any) -> None:
    services, compute, _agent, queue = world
    instance_id, task_id = provision(services)
    queue(task_id, 0, "req-1")
    queue.drain(services, limit=1)  # the container runs; prepare is next
    queue.items.clear()
    with services.db.session() as session:
        delete = start_task(
            session,
            services.secrets,
            project_id="p1",
            workflow=WorkflowName.DELETE,
            request_id="r2",
            instance_id=instance_id,
        )
        delete_id = delete.id
    queue(delete_id, 0, "r2")
    queue(task_id, 0, "req-1")
    queue.drain(services)
    assert load(services, Task, task_id).state == "CANCELLED"
    assert load(services, Task, delete_id).state == "COMPLETED"
    assert load(services, Instance, instance_id).deleted_at is not None
    assert compute.containers == {} and compute.volumes == set()
    with services.db.session() as session:
        assert session.scalars(select(Secret)).all() == []


def test_tasks_of_one_instance_run_in_the_order_they_were_asked(world: Any) -> None:
    services, _compute, agent, queue = world
    instance_id, provision_id = provision(services)
    with services.db.session() as session:
        later = start_task(
            session,
            services.secrets,
            project_id="p1",
            workflow=WorkflowName.CREATE_DATABASES,
            request_id="r3",
            instance_id=instance_id,
            params={"databases": [{"name": "late"}]},
        ).id
    runner.run_step(services, later)
    assert agent.databases == []
    assert load(services, Task, later).state == "RUNNING"
    queue.items.clear()
    queue(provision_id, 0, "req-1")
    queue(later, 0, "r3")
    queue.drain(services)
    assert load(services, Task, provision_id).state == "COMPLETED"
    assert load(services, Task, later).state == "COMPLETED"
    assert agent.databases == ["shop", "late"]  # prepared first, then the later task
