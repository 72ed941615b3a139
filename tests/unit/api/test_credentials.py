"""Debug credentials on fakes: issued with a password shown once, listed without it,
revoked early, ended by the sweep when their time is up, and write access that waits for
another member's approval when the project asks for it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import AuditEvent, Credential, utcnow
from taskmanager import credential_logins
from tests.unit.api.support import client_for, logged_in, member_of
from tests.unit.api.test_user_access import BASE, active, draining


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def ask(client: FlaskClient, instance_id: str, **fields: Any) -> Any:
    body = {"reason": "INC-7: slow checkout", "databases": ["shop"], **fields}
    return client.post(f"{BASE}/instances/{instance_id}/credentials", json={"credential": body})


def actions(world: Any) -> list[tuple[str, dict[str, Any]]]:
    with world[0].db.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.like("credential.%")))
        return [(row.action, dict(row.details)) for row in rows]


def test_a_read_login_is_made_and_its_password_shown_once(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        reply = ask(client, instance_id, ttl_seconds=600)
    assert reply.status_code == 201, reply.get_json()
    shown = reply.get_json()["credential"]
    assert shown["state"] == "ACTIVE" and shown["user"].startswith("debug_")
    made = world[2].users[shown["user"]]
    assert made.password == shown["password"] and made.access == "read"
    assert made.databases == ("shop",)
    expires = dt.datetime.fromisoformat(shown["expires_at"].removesuffix("Z"))
    issued = dt.datetime.fromisoformat(shown["issued_at"].removesuffix("Z"))
    assert expires - issued == dt.timedelta(seconds=600)
    listed = client.get(f"{BASE}/instances/{instance_id}/credentials").get_json()["credentials"]
    assert [c["id"] for c in listed] == [shown["id"]] and "password" not in listed[0]
    one = client.get(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}").get_json()
    assert one["credential"]["reason"] == "INC-7: slow checkout" and "password" not in one
    logged = actions(world)
    assert [a for a, _ in logged] == ["credential.issue", "credential.issued"]
    assert all(d["reason"] == "INC-7: slow checkout" for _, d in logged)
    assert shown["password"] not in repr(logged)
    with world[0].db.session() as session:
        assert session.scalars(select(Credential)).one().sealed is None


def test_the_sweep_drops_the_login_when_its_time_is_up(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        shown = ask(client, instance_id, ttl_seconds=60).get_json()["credential"]
    services = world[0]
    assert credential_logins.sweep(services, utcnow() + dt.timedelta(seconds=30)) == 0
    assert shown["user"] in world[2].users
    assert credential_logins.sweep(services, utcnow() + dt.timedelta(seconds=61)) == 1
    assert shown["user"] not in world[2].users
    view = client.get(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}").get_json()
    assert view["credential"]["state"] == "EXPIRED" and view["credential"]["ended_at"]
    assert credential_logins.sweep(services, utcnow() + dt.timedelta(seconds=120)) == 0
    assert [a for a, _ in actions(world)][-1] == "credential.expired"


def test_first_use_is_audited_once(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        shown = ask(client, instance_id).get_json()["credential"]
    credential_logins.sweep(world[0])
    assert "credential.used" not in [a for a, _ in actions(world)]
    world[2].sessions[shown["user"]] = 2
    credential_logins.sweep(world[0])
    credential_logins.sweep(world[0])
    used = [d for a, d in actions(world) if a == "credential.used"]
    assert len(used) == 1 and used[0]["sessions"] == 2
    view = client.get(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}").get_json()
    assert view["credential"]["first_used_at"] is not None


def test_revoke_drops_the_login_now(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        shown = ask(client, instance_id, access="write").get_json()["credential"]
        assert world[2].users[shown["user"]].access == "write"
        reply = client.delete(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}")
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["credential"]["state"] == "REVOKED"
    assert shown["user"] not in world[2].users
    again = client.delete(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}")
    assert again.status_code == 409 and "already ended (REVOKED)" in again.get_data(as_text=True)
    assert [a for a, _ in actions(world)][-2:] == ["credential.revoke", "credential.revoked"]


def test_write_access_waits_for_another_member(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    services = world[0]
    owner = logged_in(client.application.test_client(),
                      member_of(services, "proj1", ("admin",)))  # fmt: skip
    refused = client.put(f"{BASE}/settings", json={"settings": {"approve_write_credentials": True}})
    assert refused.status_code == 403
    turned = owner.put(f"{BASE}/settings", json={"settings": {"approve_write_credentials": True}})
    assert turned.get_json() == {"settings": {"approve_write_credentials": True}}
    with draining(world):
        reply = ask(client, instance_id, access="write")
        assert reply.status_code == 202, reply.get_json()
        shown = reply.get_json()["credential"]
        assert shown["state"] == "PENDING_APPROVAL" and shown["password"]
        assert shown["user"] not in world[2].users
        action = f"{BASE}/instances/{instance_id}/credentials/{shown['id']}/action"
        own = client.post(action, json={"approve": {}})
        assert own.status_code == 403 and "another member" in own.get_data(as_text=True)
        approved = owner.post(action, json={"approve": {}})
    assert approved.status_code == 200, approved.get_json()
    view = approved.get_json()["credential"]
    assert view["state"] == "ACTIVE" and view["approved_by"] and "password" not in view
    assert world[2].users[shown["user"]].password == shown["password"]
    with services.db.session() as session:
        assert session.get(Credential, shown["id"]).sealed is None
    read = ask(client, instance_id)  # read access needs nobody's approval
    assert read.status_code in (201, 202) and read.get_json()["credential"]["state"] != (
        "PENDING_APPROVAL"
    )
    assert again_conflict(owner, action)


def again_conflict(owner: FlaskClient, action: str) -> bool:
    reply = owner.post(action, json={"reject": {}})
    return reply.status_code == 409 and "not waiting for approval" in reply.get_data(as_text=True)


def test_a_rejected_request_never_gets_a_login(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    services = world[0]
    owner = logged_in(client.application.test_client(),
                      member_of(services, "proj1", ("admin",)))  # fmt: skip
    owner.put(f"{BASE}/settings", json={"settings": {"approve_write_credentials": True}})
    shown = ask(client, instance_id, access="write").get_json()["credential"]
    action = f"{BASE}/instances/{instance_id}/credentials/{shown['id']}/action"
    rejected = owner.post(action, json={"reject": {}})
    assert rejected.status_code == 200 and rejected.get_json()["credential"]["state"] == "REJECTED"
    with services.db.session() as session:
        assert session.get(Credential, shown["id"]).sealed is None
    assert shown["user"] not in world[2].users


def test_an_unapproved_request_is_rejected_after_a_day(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    owner = logged_in(client.application.test_client(),
                      member_of(world[0], "proj1", ("admin",)))  # fmt: skip
    owner.put(f"{BASE}/settings", json={"settings": {"approve_write_credentials": True}})
    shown = ask(client, instance_id, access="write").get_json()["credential"]
    assert credential_logins.sweep(world[0], utcnow() + dt.timedelta(days=1, minutes=1)) == 1
    view = client.get(f"{BASE}/instances/{instance_id}/credentials/{shown['id']}").get_json()
    assert view["credential"]["state"] == "REJECTED"


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"reason": ""}, 400, "reason is required"),
        ({"reason": None}, 400, "reason"),
        ({"access": "admin"}, 400, "access must be one of read, write"),
        ({"ttl_seconds": 5}, 400, "ttl_seconds must be an integer from 60 to 86400"),
        ({"ttl_seconds": 100000}, 400, "from 60 to 86400"),
        ({"databases": []}, 400, "databases is required"),
        ({"databases": ["bad name;"]}, 400, "database name"),
        ({"password": "mine"}, 400, "password"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    client: FlaskClient, world: Any, fields: dict[str, Any], status: int, says: str
) -> None:
    instance_id = active(client, world)
    reply = ask(client, instance_id, **fields)
    assert reply.status_code == status, reply.get_json()
    assert says in reply.get_data(as_text=True)


def test_redis_takes_no_databases(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world, "redis")
    reply = ask(client, instance_id)
    assert reply.status_code == 400 and "leave databases out" in reply.get_data(as_text=True)
    with draining(world):
        made = ask(client, instance_id, databases=None)
    assert made.status_code == 201, made.get_json()


def test_another_project_sees_nothing(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    with draining(world):
        shown = ask(client, instance_id).get_json()["credential"]
    other = client_for(world[0], "proj2")
    path = f"/v1.0/proj2/instances/{instance_id}/credentials/{shown['id']}"
    assert other.get(path).status_code == 404
    assert other.delete(path).status_code == 404
    assert shown["user"] in world[2].users
