"""A page of instances is shown with a few queries in all, each instance as it is shown
alone: configuration, replica set, recovery window and running task included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from api import related, views
from api.app import create_app
from api.views import running_task
from cellar import catalog
from cellar.models import (
    ArchiveSegment,
    Backup,
    Configuration,
    Instance,
    ReplicaSet,
    Task,
    new_id,
    utcnow,
)
from cellar.status import BackupStatus
from tests.unit.api.support import logged_in, member_of

BASE = "/v1.0/proj1"
T0 = dt.datetime(2025, 3, 1, 12, 0, 0)


def recovery_window(session: Session, instance: Instance) -> dict[str, dt.datetime] | None:
    """The window of one instance read plainly, query by query: what the batched reads
    must agree with."""
    version = catalog.DATASTORES[instance.datastore].version(instance.datastore_version)
    if version is None or not version.archive_format:
        return None
    completed = (
        Backup.instance_id == instance.id,
        Backup.status == BackupStatus.COMPLETED.value,
        Backup.deleted_at.is_(None),
    )
    earliest = session.scalar(
        select(func.min(Backup.finished_at)).where(*completed, Backup.type == "full")
    )
    if earliest is None:
        return None
    latest_backup = session.scalar(select(func.max(Backup.finished_at)).where(*completed))
    latest_archive = session.scalar(
        select(func.max(ArchiveSegment.closed_at)).where(ArchiveSegment.instance_id == instance.id)
    )
    latest = max(t for t in (earliest, latest_backup, latest_archive) if t is not None)
    return {"earliest": earliest, "latest": latest}


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def instance(number: int, **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "id": f"inst-{number:02d}",
        "project_id": "proj1",
        "name": f"db{number}",
        "flavor_id": "2",
        "datastore": "postgresql",
        "datastore_version": "15",
        "volume_size": 2,
        "status": "ACTIVE",
        "operating_status": "HEALTHY",
        "host": "127.0.0.1",
        "port": 20000 + number,
        "created": at(number),
        "updated": at(number + 1),
    }
    values.update(fields)
    return Instance(**values)


def backup(instance_id: str, kind: str, finished: int, **fields: Any) -> Backup:
    values: dict[str, Any] = {
        "project_id": "proj1",
        "instance_id": instance_id,
        "name": f"{kind}-{finished}",
        "datastore": "postgresql",
        "datastore_version": "15",
        "volume_size": 2,
        "type": kind,
        "status": "COMPLETED",
        "finished_at": at(finished),
    }
    values.update(fields)
    return Backup(**values)


def task(instance_id: str, workflow: str, created: int, state: str = "RUNNING") -> Task:
    return Task(
        project_id="proj1",
        instance_id=instance_id,
        workflow=workflow,
        step="prepare",
        state=state,
        step_number=2,
        step_count=5,
        description="the agent sets the engine up",
        created=at(created),
        updated=at(created),
    )


def varied_project(services: Any) -> list[str]:
    """Instances in as many states as a view shows, and rows of others around them."""
    with services.db.session() as session:
        session.add(
            Configuration(
                id="conf-1",
                project_id="proj1",
                name="tuned",
                datastore="postgresql",
                datastore_version="15",
            )
        )
        session.add_all(
            [
                instance(1, configuration_id="conf-1", volume_used_bytes=3 * 2**29),
                instance(2, replica_set_id="set-a", replication={"replicas_connected": 2}),
                instance(
                    3,
                    replica_set_id="set-a",
                    replica_of_id="inst-02",
                    replication={"lag_seconds": 0.5, "position": "0/300"},
                ),
                instance(4, replica_set_id="set-a", replica_of_id="inst-02"),
                instance(5, replica_set_id="set-a", replica_of_id="inst-02", deleted_at=at(60)),
                instance(
                    6,
                    datastore="mariadb",
                    datastore_version="10.11",
                    status="BUILD",
                    operating_status="UNKNOWN",
                    port=None,
                ),
                instance(
                    7,
                    datastore="redis",
                    datastore_version="7.0",
                    status="ERROR",
                    fault="the engine did not start",
                    fault_at=at(9),
                ),
                instance(8, replica_set_id="set-gone"),
                instance(9, configuration_id="conf-missing", status="RESIZE"),
                instance(10, datastore="mariadb", datastore_version="10.11"),
                instance(11, project_id="proj2", name="theirs"),
                instance(12, purpose="verify"),
            ]
        )
        session.add_all(
            [
                ReplicaSet(
                    id="set-a",
                    project_id="proj1",
                    primary_id="inst-02",
                    datastore="postgresql",
                    secret=b"x",
                    rw_port=30001,
                    ro_port=30002,
                ),
                ReplicaSet(
                    id="set-gone",
                    project_id="proj1",
                    primary_id="inst-08",
                    datastore="postgresql",
                    secret=b"x",
                    deleted_at=at(50),
                ),
            ]
        )
        session.add_all(
            [
                backup("inst-01", "full", 100),
                backup("inst-01", "incremental", 200),
                backup("inst-01", "full", 90, status="FAILED"),
                backup("inst-02", "full", 150),
                backup("inst-02", "incremental", 400, deleted_at=at(500)),
                backup("inst-03", "incremental", 120),  # no full backup: no window
                backup("inst-10", "full", 300, datastore="mariadb", datastore_version="10.11"),
                backup("inst-10", "full", 250, datastore="mariadb", datastore_version="10.11"),
                backup("inst-07", "full", 300, datastore="redis", datastore_version="7.0"),
            ]
        )
        session.add_all(
            [
                ArchiveSegment(
                    project_id="proj1",
                    instance_id=instance_id,
                    name=name,
                    size_bytes=5,
                    checksum="0" * 64,
                    closed_at=at(closed),
                )
                for instance_id, name, closed in (
                    ("inst-01", "wal-1", 150),
                    ("inst-01", "wal-2", 260),
                    ("inst-02", "wal-1", 160),
                )
            ]
        )
        session.add_all(
            [
                task("inst-06", "provision", 6),
                task("inst-09", "resize_flavor", 30),
                task("inst-09", "backup", 40),  # the newest running task is shown
                task("inst-01", "provision", 1, state="COMPLETED"),
                task("inst-07", "provision", 7, state="FAILED"),
            ]
        )
    return [f"inst-{n:02d}" for n in (1, 2, 3, 4, 6, 7, 8, 9, 10)]


@pytest.fixture
def client(world: Any) -> FlaskClient:
    services = world[0]
    return logged_in(create_app(services).test_client(), member_of(services))


@contextmanager
def statements(services: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(services.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(services.db.engine, "before_cursor_execute", count)


def listed(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    reply = client.get(f"{BASE}/instances{query}")
    assert reply.status_code == 200
    return list(reply.get_json()["instances"])


def shown(client: FlaskClient, instance_id: str) -> dict[str, Any]:
    """The instance shown alone, less the agent's last answer that only that view has."""
    reply = client.get(f"{BASE}/instances/{instance_id}")
    assert reply.status_code == 200
    view = dict(reply.get_json()["instance"])
    assert "service_status_updated" in view and "connection" in view
    view.pop("service_status_updated")
    connection = view.pop("connection")
    if connection is not None:  # a list says the same as "hostname" and "port"
        assert connection == {"host": view["hostname"], "port": view["port"]}
    return view


def test_each_listed_instance_is_as_it_is_shown_alone(client: FlaskClient, world: Any) -> None:
    ids = varied_project(world[0])
    page = listed(client)
    assert [v["id"] for v in page] == ids[::-1]  # newest first
    assert page == [shown(client, i) for i in ids[::-1]]
    by_id = {v["id"]: v for v in page}
    assert by_id["inst-01"]["configuration"]["name"] == "tuned"
    assert by_id["inst-09"]["configuration"]["name"] is None
    assert [r["id"] for r in by_id["inst-02"]["replicas"]] == ["inst-03", "inst-04"]
    assert by_id["inst-03"]["replica_of"]["id"] == "inst-02"
    assert by_id["inst-02"]["endpoints"]["rw"] == {"host": "127.0.0.1", "port": 30001}
    assert "replication" not in by_id["inst-08"]  # its set is deleted
    assert by_id["inst-01"]["recovery_window"] == {
        "earliest": "2025-03-01T13:40:00Z",
        "latest": "2025-03-01T16:20:00Z",
    }
    assert by_id["inst-10"]["recovery_window"]["earliest"] == "2025-03-01T16:10:00Z"
    for no_window in ("inst-03", "inst-07", "inst-04"):
        assert "recovery_window" not in by_id[no_window]
    assert by_id["inst-09"]["task"]["workflow"] == "backup"
    assert by_id["inst-06"]["task"]["workflow"] == "provision"
    assert "task" not in by_id["inst-01"] and "task" not in by_id["inst-07"]
    assert by_id["inst-07"]["fault"]["message"] == "the engine did not start"


def test_batched_parts_agree_with_the_reads_of_one_instance(world: Any) -> None:
    services = world[0]
    ids = varied_project(services)
    app = create_app(services)
    with app.test_request_context("/", base_url="http://localhost"), services.db.session() as s:
        rows = [s.get(Instance, i) for i in ids]
        tuples = [views.row_of(r) for r in rows if r is not None]
        inputs = {i.instance.id: i for i in views.inputs_of(s, tuples)}
        for row in rows:
            assert row is not None
            window = inputs[row.id].window
            assert (window._asdict() if window else None) == recovery_window(s, row)
            task = running_task(s, row.id)
            batched = inputs[row.id].task
            assert (batched.id if batched else None) == (task.id if task else None)
            if task is not None and batched is not None:
                assert views.task_view(batched) == views.task_view(task)


def test_ids_are_sent_in_slices(
    client: FlaskClient, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = varied_project(world[0])
    whole = listed(client)
    monkeypatch.setattr(related, "IN_LIST", 2)
    assert listed(client) == whole
    assert [shown(client, i) for i in ids[::-1]] == whole


def test_a_page_takes_the_same_queries_for_few_instances_or_many(world: Any) -> None:
    services = world[0]
    varied_project(services)
    token = member_of(services)

    def first_list() -> tuple[int, list[str]]:
        client = logged_in(create_app(services).test_client(), token)  # nothing kept yet
        assert client.get(f"{BASE}/flavors").status_code == 200  # the token, remembered
        with statements(services) as seen:
            shown = len(listed(client))
        return shown, seen

    shown_few, few = first_list()
    with services.db.session() as session:
        session.add_all(
            [instance(n, replica_set_id="set-a", replica_of_id="inst-02") for n in range(13, 20)]
            + [instance(n, configuration_id="conf-1") for n in range(20, 40)]
        )
        session.add_all([task(f"inst-{n:02d}", "restart", n) for n in range(20, 40)])
        session.add_all([backup(f"inst-{n:02d}", "full", n) for n in range(20, 40)])
    shown_many, many = first_list()
    assert (shown_few, shown_many) == (9, 36)
    assert len(many) == len(few) <= 9


def test_an_unchanged_page_reads_only_the_feed(client: FlaskClient, world: Any) -> None:
    services = world[0]
    varied_project(services)
    whole = listed(client)
    with statements(services) as seen:
        assert listed(client) == whole
    assert [s for s in seen if "identity_epoch" not in s] == [
        next(s for s in seen if "FROM view_changes" in s)
    ]


def test_a_changed_page_reads_the_changed_instances_and_their_sets(
    client: FlaskClient, world: Any
) -> None:
    services = world[0]
    varied_project(services)
    listed(client)
    with services.db.session() as session:
        session.get(Instance, "inst-03").status = "REBOOT"
    with statements(services) as seen:
        by_id = {v["id"]: v for v in listed(client)}
    assert by_id["inst-03"]["status"] == "REBOOT"
    read_again = [s for s in seen if s.startswith("SELECT instances.id, instances.project_id")]
    assert len(read_again) == 2  # the instance, then the other members of its set


def test_pages_follow_the_marker_with_the_same_views(client: FlaskClient, world: Any) -> None:
    varied_project(world[0])
    whole = listed(client)
    first = client.get(f"{BASE}/instances?limit=4").get_json()
    marker = first["links"][0]["href"].split("marker=")[1]
    rest = listed(client, f"?marker={marker}")
    assert first["instances"] + rest == whole


def test_a_new_instance_is_viewed_in_the_transaction_that_made_it(world: Any) -> None:
    services = world[0]
    app = create_app(services)
    with app.test_request_context("/", base_url="http://localhost"), services.db.session() as s:
        made = instance(1, id=new_id(), status="BUILD", created=utcnow())
        s.add(made)
        s.add(task(made.id, "provision", 0))
        s.flush()
        view = views.instance_view(s, made)
    assert view["task"]["workflow"] == "provision" and view["connection"] is None


def test_a_change_to_any_row_a_view_reads_shows_on_the_next_page(
    client: FlaskClient, world: Any
) -> None:
    services = world[0]
    ids = varied_project(services)
    before = {v["id"]: v for v in listed(client)}  # the views are kept from here on
    with services.db.session() as session:
        session.get(Instance, "inst-01").name = "renamed"
        session.get(Configuration, "conf-1").name = "retuned"
        session.get(ReplicaSet, "set-a").rw_port = 30009
        session.get(Instance, "inst-03").replication = {"lag_seconds": 7.0}
        session.add(instance(13, replica_set_id="set-a", replica_of_id="inst-02"))
        session.add(backup("inst-10", "incremental", 700, datastore="mariadb"))
        session.add(
            ArchiveSegment(
                project_id="proj1",
                instance_id="inst-01",
                name="wal-3",
                size_bytes=5,
                checksum="0" * 64,
                closed_at=at(800),
            )
        )
        running = session.scalars(select(Task).where(Task.instance_id == "inst-06")).one()
        running.step, running.step_number = "start", 3
        done = session.scalars(
            select(Task).where(Task.instance_id == "inst-09", Task.workflow == "backup")
        ).one()
        done.state = "COMPLETED"
    after = {v["id"]: v for v in listed(client)}
    assert list(after) == ["inst-13", *ids[::-1]]
    assert list(after.values()) == [shown(client, i) for i in after]
    assert after["inst-01"]["name"] == "renamed"
    assert after["inst-01"]["configuration"]["name"] == "retuned"
    assert after["inst-01"]["recovery_window"]["latest"] == "2025-03-02T01:20:00Z"
    assert after["inst-02"]["endpoints"]["rw"]["port"] == 30009
    assert [r["id"] for r in after["inst-02"]["replicas"]] == ["inst-03", "inst-04", "inst-13"]
    assert after["inst-03"]["replication"]["lag_seconds"] == 7.0
    assert after["inst-10"]["recovery_window"]["latest"] == "2025-03-01T23:40:00Z"
    assert after["inst-06"]["task"]["step"] == "start"
    assert after["inst-09"]["task"]["workflow"] == "resize_flavor"
    for changed in ("inst-01", "inst-02", "inst-03", "inst-06", "inst-09", "inst-10"):
        assert after[changed] != before[changed]
    assert after["inst-07"] == before["inst-07"]


def test_views_are_kept_for_each_address_the_api_is_reached_at(
    client: FlaskClient, world: Any
) -> None:
    varied_project(world[0])
    here = listed(client)
    reply = client.get(f"{BASE}/instances", base_url="http://127.0.0.1:8779")
    there = reply.get_json()["instances"]
    assert here[0]["links"][0]["href"].startswith("http://localhost/")
    assert there[0]["links"][0]["href"].startswith("http://127.0.0.1:8779/")
