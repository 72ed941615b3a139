"""Fenced steps: one step run by two workers commits once; dead workers' steps are taken over."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import update

from cellar.models import Instance, Task, Worker, utcnow
from cellar.status import TaskState
from cellar.tasks import start_task
from cellar.workflows import WorkflowName
from taskmanager import runner
from taskmanager.context import StepContext
from taskmanager.drivers.base import ContainerSpec, Ports
from taskmanager.heartbeat import BURIED, Heartbeat, this_host
from taskmanager.lease import Lease, LeaseLost, acquire
from tests.unit.fakes import FakeCompute


class StallingCompute(FakeCompute):
    """A compute driver whose container start waits until the test lets it go."""

    def __init__(self, ports: Ports) -> None:
        super().__init__()
        self.ports = ports
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def ensure_container(self, spec: ContainerSpec) -> Ports:
        self.entered.set()
        assert self.go_on.wait(10)
        return super().ensure_container(spec)


def new_instance(services: Any, workflow: WorkflowName = WorkflowName.PROVISION) -> str:
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
            workflow=workflow,
            request_id="req-1",
            instance_id=instance.id,
        )
        return str(task.id)


def worker(services: Any, name: str, **changes: Any) -> Any:
    """Another worker on the same metadata database, alive."""
    heartbeat = Heartbeat(services.db, services.settings.step_lease, worker_id=name)
    heartbeat.register()
    return dataclasses.replace(services, heartbeat=heartbeat, **changes)


def make_stale(services: Any, worker_id: str) -> None:
    with services.db.session() as session:
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=utcnow() - dt.timedelta(minutes=1))
        )


def load(services: Any, model: Any, key: str) -> Any:
    with services.db.session() as session:
        return session.get(model, key)


def test_one_step_run_by_two_workers_at_once_commits_exactly_once(world: Any) -> None:
    services, _compute, _agent, queue = world
    task_id = new_instance(services)
    slow = worker(services, "worker-A", compute=StallingCompute(Ports(engine=50000, agent=50001)))
    fast = worker(services, "worker-B")
    first = threading.Thread(target=runner.run_step, args=(slow, task_id))
    first.start()
    assert slow.compute.entered.wait(10)  # A holds the lease, mid-step

    make_stale(services, "worker-A")  # A looks dead: B takes the step over and runs it
    runner.run_step(fast, task_id)
    slow.compute.go_on.set()  # A finishes the same step and tries to commit
    first.join(10)

    task = load(services, Task, task_id)
    instance = load(services, Instance, task.instance_id)
    assert (task.step, task.step_number, task.attempt) == ("prepare", 2, 0)
    assert (instance.port, instance.agent_port) == (40000, 40001)  # B's, not A's
    assert [item[0] for item in queue.items] == [task_id]  # one next step, from B
    assert task.lease_owner is None


def test_a_step_whose_lease_ran_out_and_was_taken_writes_nothing(world: Any) -> None:
    services, _compute, _agent, queue = world
    task_id = new_instance(services)
    slow = worker(services, "worker-A", compute=StallingCompute(Ports(engine=50000, agent=50001)))
    first = threading.Thread(target=runner.run_step, args=(slow, task_id))
    first.start()
    assert slow.compute.entered.wait(10)
    with services.db.session() as session:  # A is alive, but its lease ran out
        session.execute(
            update(Task).where(Task.id == task_id).values(lease_until=utcnow() - dt.timedelta(1))
        )
    taken = acquire(services.db, task_id, "worker-B", 60, 5)
    slow.compute.go_on.set()
    first.join(10)

    assert taken is not None and taken.attempt == 2
    task = load(services, Task, task_id)
    assert (task.step, task.lease_owner, task.attempt) == ("start_instance", "worker-B", 2)
    assert load(services, Instance, task.instance_id).port is None
    assert queue.items == []


def test_a_dead_workers_lease_is_taken_at_once_but_only_by_a_live_worker(world: Any) -> None:
    services = world[0]
    task_id = new_instance(services)
    worker(services, "worker-A")
    held = acquire(services.db, task_id, "worker-A", 60, 5)
    assert held is not None
    assert acquire(services.db, task_id, "worker-B", 60, 5) is None  # A is alive

    make_stale(services, "worker-A")
    assert acquire(services.db, task_id, "worker-C", 60, 5) is None  # C has no heartbeat
    worker(services, "worker-B")
    taken = acquire(services.db, task_id, "worker-B", 60, 5)
    assert taken is not None and taken.attempt == held.attempt + 1


def test_reconcile_queues_the_steps_of_dead_workers_again(world: Any) -> None:
    services, _compute, _agent, queue = world
    task_id = new_instance(services)
    worker(services, "worker-A")
    assert acquire(services.db, task_id, "worker-A", 60, 5) is not None
    with services.db.session() as session:
        session.get(Task, task_id).next_run_at = utcnow() - dt.timedelta(minutes=1)
    assert runner.reconcile(services) == 0  # A lives: its step is its own

    make_stale(services, "worker-A")
    assert runner.reconcile(services) == 1
    assert [item[0] for item in queue.items] == [task_id]


def test_the_heartbeat_keeps_running_steps_and_marks_those_taken_over(world: Any) -> None:
    services = world[0]
    task_id = new_instance(services)
    beat = Heartbeat(services.db, 3.0, worker_id="worker-A")
    beat.register()
    lease = acquire(services.db, task_id, "worker-A", 3.0, 5)
    assert lease is not None
    with beat.hold(lease, until=utcnow() + dt.timedelta(minutes=5)):
        with services.db.session() as session:
            session.get(Task, task_id).lease_until = utcnow()
        for held in beat._held.values():
            held.renewed -= 10  # as if a third of the lease had passed
        beat.beat()
        assert load(services, Task, task_id).lease_until > utcnow() + dt.timedelta(seconds=2)

        with services.db.session() as session:  # another worker took the step over
            session.get(Task, task_id).attempt += 1
        for held in beat._held.values():
            held.renewed -= 10
        beat.beat()
    assert lease.lost
    ctx = StepContext(services, services.db.new_session(), load(services, Task, task_id), lease)
    with pytest.raises(LeaseLost):
        ctx.keep_lease()  # a stream stops at its next chunk
    ctx.session.close()


def test_a_cancelled_tasks_step_writes_nothing_and_frees_its_lease(world: Any) -> None:
    services, _compute, _agent, queue = world
    task_id = new_instance(services)
    slow = worker(services, "worker-A", compute=StallingCompute(Ports(engine=50000, agent=50001)))
    first = threading.Thread(target=runner.run_step, args=(slow, task_id))
    first.start()
    assert slow.compute.entered.wait(10)
    with services.db.session() as session:  # a delete cancels it meanwhile
        session.get(Task, task_id).state = TaskState.CANCELLED.value
    slow.compute.go_on.set()
    first.join(10)

    task = load(services, Task, task_id)
    assert (task.state, task.step, task.lease_until) == ("CANCELLED", "start_instance", None)
    assert load(services, Instance, task.instance_id).port is None
    assert queue.items == []


def test_a_new_worker_buries_the_workers_of_its_host_whose_process_is_gone(world: Any) -> None:
    services = world[0]
    with services.db.session() as session:
        session.add(Worker(id="gone", host=this_host(), pid=2**22 + 17, heartbeat_at=utcnow()))
        session.add(
            Worker(id="elsewhere", host="other/boot", pid=2**22 + 17, heartbeat_at=utcnow())
        )
    Heartbeat(services.db, 60, worker_id="new").register()

    assert load(services, Worker, "gone").heartbeat_at == BURIED
    assert load(services, Worker, "elsewhere").heartbeat_at > BURIED
    assert load(services, Worker, "new").pid > 0


def test_a_fence_fails_for_an_attempt_that_is_not_the_current_one(world: Any) -> None:
    services = world[0]
    task_id = new_instance(services)
    worker(services, "worker-A")
    held = acquire(services.db, task_id, "worker-A", 60, 5)
    assert held is not None
    stale = Lease(task_id=task_id, owner="worker-A", attempt=held.attempt - 1)
    session = services.db.new_session()
    try:
        with pytest.raises(LeaseLost, match="lost its lease"):
            stale.fence(session)
        held.fence(session)
        assert held.locked
    finally:
        session.rollback()
        session.close()
