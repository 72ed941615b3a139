"""Trove's management routes over instances, and reset_status (troveclient's force
delete: reset_status, then delete)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api.app import create_app
from cellar.models import AuditEvent, Backup, Instance, Secret, Task
from taskmanager.lease import LeaseLost, acquire
from tests.unit.api.support import admin_project_id, admin_token, logged_in, member_of

BODY = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 1},
    "datastore": {"type": "postgresql", "version": "15"},
    "users": [{"name": "alice", "password": "pa55-word!"}],
}


@pytest.fixture
def app(world: Any) -> Flask:
    return create_app(world[0])


def client_of(app: Flask, world: Any, project: str, roles: tuple[str, ...] = ("member",)) -> Any:
    return logged_in(app.test_client(), member_of(world[0], project, roles))


@pytest.fixture
def client(app: Flask, world: Any) -> FlaskClient:
    return client_of(app, world, "proj1")


@pytest.fixture
def admin(app: Flask, world: Any) -> FlaskClient:
    return logged_in(app.test_client(), admin_token(world[0]))


def mgmt(world: Any, rest: str = "") -> str:
    return f"/v1.0/{admin_project_id(world[0])}/mgmt/instances{rest}"


def create(client: FlaskClient, project: str = "proj1", drain: Any = None, **changes: Any) -> str:
    reply = client.post(f"/v1.0/{project}/instances", json={"instance": {**BODY, **changes}})
    assert reply.status_code == 202, reply.get_json()
    if drain is not None:
        drain[3].drain(drain[0])
    return str(reply.get_json()["instance"]["id"])


def listed(admin: FlaskClient, path: str) -> dict[str, Any]:
    reply = admin.get(path)
    assert reply.status_code == 200, reply.get_json()
    return dict(reply.get_json())


def test_the_admin_lists_every_projects_instances_with_their_owner(
    app: Flask, admin: FlaskClient, client: FlaskClient, world: Any
) -> None:
    mine = create(client, drain=world)
    theirs = create(client_of(app, world, "proj2"), "proj2", name="books")
    rows = listed(admin, mgmt(world))["instances"]
    assert [(r["id"], r["tenant_id"], r["project_id"]) for r in rows] == [
        (theirs, "proj2", "proj2"),
        (mine, "proj1", "proj1"),
    ]  # newest first
    first = rows[1]
    # what `openstack database instance list --all-projects` reads from each row
    assert first["server_id"] == mine and first["flavor"]["id"] == "2"
    assert first["volume"]["size"] == 1
    assert first["datastore"] == {"type": "postgresql", "version": "15", "version_number": "15"}
    assert (first["status"], first["deleted"], first["deleted_at"]) == ("ACTIVE", False, None)
    assert first["server"]["tenant_id"] == "proj1"
    assert first["service_status"] == first["operating_status"]
    assert rows[0]["status"] == "BUILD"
    assert rows[0]["task_description"] == "waiting for a worker to begin it"
    assert [r["id"] for r in listed(admin, mgmt(world, "?project_id=proj2"))["instances"]] == [
        theirs
    ]


def test_the_list_pages_as_troveclient_asks(
    admin: FlaskClient, client: FlaskClient, world: Any
) -> None:
    made = [create(client) for _ in range(3)][::-1]  # listed newest first
    page = listed(admin, mgmt(world, "?limit=2&deleted=False&include_clustered=False"))
    assert [r["id"] for r in page["instances"]] == made[:2]
    (link,) = page["links"]
    assert link["rel"] == "next"
    query = parse_qs(urlparse(link["href"]).query)
    assert query == {
        "deleted": ["False"],
        "include_clustered": ["False"],
        "limit": ["2"],
        "marker": [made[1]],
    }
    assert urlparse(link["href"]).path == mgmt(world)
    rest = listed(admin, f"{urlparse(link['href']).path}?{urlparse(link['href']).query}")
    assert [r["id"] for r in rest["instances"]] == made[2:] and "links" not in rest


def test_deleted_instances_are_listed_on_request(
    admin: FlaskClient, client: FlaskClient, world: Any
) -> None:
    gone = create(client, drain=world)
    kept = create(client)
    assert client.delete(f"/v1.0/proj1/instances/{gone}").status_code == 202
    world[3].drain(world[0])
    ids = [r["id"] for r in listed(admin, mgmt(world, "?deleted=false"))["instances"]]
    assert ids == [kept]
    rows = listed(admin, mgmt(world, "?deleted=true"))["instances"]
    assert [r["id"] for r in rows] == [gone] and rows[0]["deleted"] is True
    assert rows[0]["deleted_at"] is not None
    assert len(listed(admin, mgmt(world))["instances"]) == 2  # Trove: no filter without it
    assert admin.get(mgmt(world, f"/{gone}")).status_code == 404
    shown = admin.get(mgmt(world, f"/{gone}?deleted=true")).get_json()["instance"]
    assert shown["id"] == gone and shown["deleted"] is True


def test_the_admin_shows_any_projects_instance(app: Flask, admin: FlaskClient, world: Any) -> None:
    theirs = create(client_of(app, world, "proj2"), "proj2", drain=world)
    reply = admin.get(mgmt(world, f"/{theirs}"))
    assert reply.status_code == 200, reply.get_json()
    view = reply.get_json()["instance"]
    assert (view["id"], view["tenant_id"], view["project_id"]) == (theirs, "proj2", "proj2")
    assert view["guest_status"] == {"state_description": "healthy"}
    assert admin.get(mgmt(world, "/no-such-id")).status_code == 404


@pytest.mark.parametrize(
    ("query", "status", "word"),
    [
        ("?deleted=maybe", 400, "deleted"),
        ("?include_clustered=2", 400, "include_clustered"),
        ("?limit=0", 400, "limit"),
        ("?limit=lots", 400, "limit"),
        ("?project_id=bad.id", 400, "project_id"),
        ("?marker=no-such-id", 404, "marker"),
    ],
)
def test_bad_list_queries_are_refused(
    admin: FlaskClient, world: Any, query: str, status: int, word: str
) -> None:
    reply = admin.get(mgmt(world, query))
    assert reply.status_code == status, reply.get_json()
    assert word in next(iter(reply.get_json().values()))["message"]


def test_management_routes_are_the_admins_alone(
    app: Flask, client: FlaskClient, world: Any
) -> None:
    instance_id = create(client)
    admin_id = admin_project_id(world[0])
    refused = [
        (client, "/v1.0/proj1/mgmt/instances"),
        (client, f"/v1.0/proj1/mgmt/instances/{instance_id}"),
        (client, f"/v1.0/{admin_id}/mgmt/instances"),
        (client_of(app, world, "proj1", ("reader",)), "/v1.0/proj1/mgmt/instances"),
        (client_of(app, world, admin_id, ("member",)), mgmt(world)),
        (client_of(app, world, admin_id, ("reader",)), mgmt(world, f"/{instance_id}")),
    ]
    for who, path in refused:
        reply = who.get(path)
        assert reply.status_code == 403, (path, reply.get_json())
        assert instance_id not in reply.get_data(as_text=True)


def task_of(world: Any, instance_id: str) -> Task:
    with world[0].db.session() as session:
        return session.scalars(
            select(Task).where(Task.instance_id == instance_id).order_by(Task.created.desc())
        ).first()


def instance(world: Any, instance_id: str) -> Instance:
    with world[0].db.session() as session:
        found = session.get(Instance, instance_id)
        assert found is not None
        return found


def reset(client: FlaskClient, instance_id: str, spec: Any = None, project: str = "proj1") -> Any:
    return client.post(
        f"/v1.0/{project}/instances/{instance_id}/action",
        json={"reset_status": {} if spec is None else spec},
    )


def test_force_delete_as_troveclient_sends_it(client: FlaskClient, world: Any) -> None:
    """A create no worker ever began: reset_status, then delete, removes it."""
    stuck = create(client)
    world[3].items.clear()  # its message was lost
    provision = task_of(world, stuck)
    assert reset(client, stuck).status_code == 202
    assert instance(world, stuck).status == "ERROR"
    assert client.delete(f"/v1.0/proj1/instances/{stuck}").status_code == 202
    world[3].drain(world[0])
    gone = instance(world, stuck)
    assert gone.deleted_at is not None
    with world[0].db.session() as session:
        states = {t.workflow: t.state for t in session.scalars(select(Task))}
        assert session.get(Secret, provision.id) is None  # its users' passwords went too
    assert states == {"provision": "CANCELLED", "delete": "COMPLETED"}
    assert client.get(f"/v1.0/proj1/instances/{stuck}").status_code == 404


def test_reset_status_fences_out_a_worker_still_in_a_step(client: FlaskClient, world: Any) -> None:
    services = world[0]
    stuck = create(client)
    task_id = task_of(world, stuck).id
    lease = acquire(services.db, task_id, "worker-1", 60.0, 5.0)
    assert lease is not None
    step = services.db.new_session()  # the worker's step, with its fenced commits
    lease.guard(step)
    step.get(Instance, stuck).status = "ACTIVE"

    assert reset(client, stuck).status_code == 202

    with pytest.raises(LeaseLost):
        step.commit()
    step.rollback()
    step.close()
    assert not lease.renew(services.db, 60.0)
    reset_one = instance(world, stuck)
    assert reset_one.status == "ERROR"
    assert reset_one.fault is not None and "reset to ERROR (it was BUILD)" in reset_one.fault
    assert "proj1-member" in reset_one.fault and task_id in reset_one.fault
    task = task_of(world, stuck)
    assert task.state == "CANCELLED" and "reset by user proj1-member" in (task.error or "")
    # the worker lets go of the lease as it abandons the step; the delete then goes ahead
    lease.release(services.db)
    assert client.delete(f"/v1.0/proj1/instances/{stuck}").status_code == 202
    world[3].drain(world[0])
    assert instance(world, stuck).deleted_at is not None


def test_a_delete_waits_while_a_stopped_step_may_still_run(client: FlaskClient, world: Any) -> None:
    services = world[0]
    stuck = create(client)
    lease = acquire(services.db, task_of(world, stuck).id, "worker-1", 60.0, 5.0)
    assert lease is not None
    assert reset(client, stuck).status_code == 202
    client.delete(f"/v1.0/proj1/instances/{stuck}")
    world[3].drain(world[0], limit=5)
    assert instance(world, stuck).deleted_at is None  # the lease has not run out yet
    assert task_of(world, stuck).step == "stop_other_tasks"


def test_reset_unsticks_a_delete_that_hangs(client: FlaskClient, world: Any) -> None:
    hung = create(client, drain=world)
    client.delete(f"/v1.0/proj1/instances/{hung}")
    first = task_of(world, hung)
    world[3].items.clear()
    assert client.delete(f"/v1.0/proj1/instances/{hung}").status_code == 202
    assert world[3].items == []  # a delete already runs: nothing new was started
    assert reset(client, hung).status_code == 202
    assert client.delete(f"/v1.0/proj1/instances/{hung}").status_code == 202
    second = task_of(world, hung)
    assert second.id != first.id and task_of(world, hung).workflow == "delete"
    world[3].drain(world[0])
    assert instance(world, hung).deleted_at is not None


def test_reset_fails_the_unfinished_backup_and_is_audited(client: FlaskClient, world: Any) -> None:
    busy = create(client, drain=world)
    made = client.post("/v1.0/proj1/backups", json={"backup": {"name": "b", "instance": busy}})
    assert made.status_code == 202
    world[3].items.clear()
    assert reset(client, busy, {"force_delete": True}).status_code == 202
    with world[0].db.session() as session:
        backup = session.scalars(select(Backup)).one()
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "instance.reset_status")
        ).one()
    assert backup.status == "FAILED" and "reset by user" in (backup.fault or "")
    assert event.target_id == busy and event.outcome == "accepted"
    assert event.details["previous_status"] == "BACKUP"
    assert event.details["failed_backups"] == [backup.id]
    assert event.details["stopped_tasks"] == [task_of(world, busy).id]
    assert event.details["force_delete"] is True
    assert event.user_name.startswith("proj1-member")
    assert client.get("/v1.0/proj1/instances/" + busy).get_json()["instance"]["status"] == "ERROR"


def test_an_admin_may_reset_another_projects_instance(
    admin: FlaskClient, client: FlaskClient, world: Any
) -> None:
    instance_id = create(client, drain=world)
    assert reset(admin, instance_id).status_code == 202
    fault = instance(world, instance_id).fault or ""
    assert "by user admin" in fault and "it was ACTIVE" in fault
    assert task_of(world, instance_id).state == "COMPLETED"  # a finished task is left alone


def test_who_may_not_reset_and_bad_resets(app: Flask, client: FlaskClient, world: Any) -> None:
    instance_id = create(client, drain=world)
    reader = client_of(app, world, "proj1", ("reader",))
    assert reset(reader, instance_id).status_code == 403
    other = client_of(app, world, "proj2")
    assert reset(other, instance_id).status_code == 403
    assert reset(other, instance_id, project="proj2").status_code == 404
    assert reset(client, "no-such-id").status_code == 404
    for spec in ({"later": True}, "now", [1]):
        reply = reset(client, instance_id, spec)
        assert reply.status_code == 400, spec
        assert "reset_status takes {}" in reply.get_json()["badRequest"]["message"]
    unchanged = instance(world, instance_id)
    assert (unchanged.status, unchanged.fault) == ("ACTIVE", None)
