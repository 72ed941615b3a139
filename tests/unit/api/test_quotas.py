"""Quotas: limits from the settings or a project's own, counted in the creating
transaction, shown by /limits and /mgmt/quotas, refused with Trove's 413."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from api import auth
from api.app import create_app
from cellar import quotas
from cellar.errors import AgentError, OverLimit
from cellar.identity.store import Identity
from cellar.models import Backup, Instance, ProjectQuota, Task
from cellar.quotas import Resource
from tests.unit.api.support import admin_project_id, admin_token, logged_in, member_of

BASE = "/v1.0/proj1"
BODY = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 1},
    "datastore": {"type": "postgresql", "version": "15"},
}


def with_quotas(world: Any, **limits: int) -> None:
    world[0].settings = dataclasses.replace(
        world[0].settings, **{f"quota_{k}": v for k, v in limits.items()}
    )


@pytest.fixture
def app(world: Any) -> Flask:
    return create_app(world[0])


@pytest.fixture
def client(app: Flask, world: Any) -> FlaskClient:
    return logged_in(app.test_client(), member_of(world[0]))


@pytest.fixture
def admin(app: Flask, world: Any) -> FlaskClient:
    return logged_in(app.test_client(), admin_token(world[0]))


def mgmt(world: Any, target: str = "proj1") -> str:
    return f"/v1.0/{admin_project_id(world[0])}/mgmt/quotas/{target}"


def create(client: FlaskClient, **changes: Any) -> Any:
    return client.post(f"{BASE}/instances", json={"instance": {**BODY, **changes}})


def active(client: FlaskClient, world: Any, **changes: Any) -> str:
    reply = create(client, **changes)
    assert reply.status_code == 202, reply.get_json()
    world[3].drain(world[0])
    return str(reply.get_json()["instance"]["id"])


def live_instances(world: Any) -> int:
    with world[0].db.session() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Instance).where(Instance.deleted_at.is_(None))
            )
            or 0
        )


def over_limit(reply: Any) -> str:
    assert reply.status_code == 413, reply.get_json()
    body = reply.get_json()
    assert list(body) == ["overLimit"] and body["overLimit"]["code"] == 413
    return str(body["overLimit"]["message"])


def absolute(client: FlaskClient) -> dict[str, Any]:
    reply = client.get(f"{BASE}/limits")
    assert reply.status_code == 200, reply.get_json()
    found = reply.get_json()["limits"]
    assert len(found) == 1 and found[0]["verb"] == "ABSOLUTE"
    return dict(found[0])


def test_limits_show_the_settings_defaults_and_what_is_used(
    client: FlaskClient, world: Any
) -> None:
    assert absolute(client) == {
        "verb": "ABSOLUTE",
        "max_instances": 10,
        "max_backups": 50,
        "max_volumes": 40,
        "max_ram": 20480,
        "total_instances_used": 0,
        "total_backups_used": 0,
        "total_volumes_used": 0,
        "total_ram_used": 0,
    }
    active(client, world, flavorRef="3", volume={"size": 3})
    used = absolute(client)
    assert (used["total_instances_used"], used["total_volumes_used"]) == (1, 3)
    assert used["total_ram_used"] == 1024  # flavor 3, "medium"


def test_a_readers_token_may_read_the_limits(app: Flask, world: Any) -> None:
    reader = logged_in(app.test_client(), member_of(world[0], roles=("reader",)))
    assert absolute(reader)["max_instances"] == 10


def test_a_projects_own_quota_overrides_the_default(
    client: FlaskClient, admin: FlaskClient, world: Any
) -> None:
    reply = admin.put(mgmt(world), json={"quotas": {"instances": 5, "ram": -1}})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json() == {"quotas": {"instances": 5, "ram": -1}}
    limits = absolute(client)
    assert (limits["max_instances"], limits["max_ram"], limits["max_backups"]) == (5, -1, 50)
    again = admin.put(mgmt(world), json={"quotas": {"instances": 6}})
    assert again.get_json() == {"quotas": {"instances": 6}}
    with world[0].db.session() as session:
        rows = session.scalars(select(ProjectQuota).order_by(ProjectQuota.resource)).all()
        assert [(r.project_id, r.resource, r.hard_limit) for r in rows] == [
            ("proj1", "instances", 6),
            ("proj1", "ram", -1),
        ]


def test_mgmt_quotas_show_every_resource_in_troves_shape(
    client: FlaskClient, admin: FlaskClient, world: Any
) -> None:
    active(client, world, volume={"size": 2})
    admin.put(mgmt(world), json={"quotas": {"backups": 7}})
    reply = admin.get(mgmt(world))
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json() == {
        "quotas": [
            {"resource": "instances", "in_use": 1, "reserved": 0, "limit": 10},
            {"resource": "backups", "in_use": 0, "reserved": 0, "limit": 7},
            {"resource": "volumes", "in_use": 2, "reserved": 0, "limit": 40},
            {"resource": "ram", "in_use": 512, "reserved": 0, "limit": 20480},
        ]
    }


def test_the_third_create_is_refused_with_troves_413(client: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=2)
    queue = world[3]
    assert create(client).status_code == 202
    assert create(client).status_code == 202
    queued = len(queue.items)
    message = over_limit(create(client))
    assert message == "Quota exceeded for instances: limit 2, in use 2, asked 1"
    assert live_instances(world) == 2
    assert len(queue.items) == queued  # nothing more was started
    with world[0].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 2


def test_deleting_an_instance_frees_its_slot_at_once(client: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=2)
    first = active(client, world)
    active(client, world)
    over_limit(create(client))
    assert client.delete(f"{BASE}/instances/{first}").status_code == 202
    # the delete task has not run yet: the instance still has its row, and no longer counts
    assert live_instances(world) == 2
    assert create(client).status_code == 202


def test_a_failed_delete_counts_again(client: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=1)
    first = active(client, world)
    client.delete(f"{BASE}/instances/{first}")
    with world[0].db.session() as session:
        task = session.scalars(select(Task).where(Task.workflow == "delete")).one()
        task.state = "FAILED"
    over_limit(create(client))


def test_replica_count_counts_every_replica(client: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=3)
    primary = active(client, world, volume={"size": 2})
    body = {"name": "copy", "replica_of": primary, "replica_count": 3}
    message = over_limit(client.post(f"{BASE}/instances", json={"instance": body}))
    assert message == "Quota exceeded for instances: limit 3, in use 1, asked 3"
    assert live_instances(world) == 1
    body["replica_count"] = 2
    assert client.post(f"{BASE}/instances", json={"instance": body}).status_code == 202
    assert live_instances(world) == 3
    assert absolute(client)["total_volumes_used"] == 6


def test_volumes_and_ram_are_counted_in_gb_and_mb(client: FlaskClient, world: Any) -> None:
    with_quotas(world, volumes=3, ram=1024)
    assert create(client, volume={"size": 2}).status_code == 202
    message = over_limit(create(client, volume={"size": 2}))
    assert message == "Quota exceeded for volumes: limit 3 GB, in use 2 GB, asked 2 GB"
    message = over_limit(create(client, flavorRef="3"))  # 512 MB in use, 1024 asked
    assert message == "Quota exceeded for ram: limit 1024 MB, in use 512 MB, asked 1024 MB"
    both = over_limit(create(client, flavorRef="3", volume={"size": 2}))
    assert "volumes: limit 3 GB" in both and "ram: limit 1024 MB" in both
    assert create(client, flavorRef="1", volume={"size": 1}).status_code == 202


def test_a_restore_is_an_instance_create(client: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=1)
    source = active(client, world)
    made = client.post(f"{BASE}/backups", json={"backup": {"name": "b", "instance": source}})
    assert made.status_code == 202, made.get_json()
    world[3].drain(world[0])
    restore = {
        "name": "copy",
        "flavorRef": "2",
        "restorePoint": {"backupRef": made.get_json()["backup"]["id"]},
    }
    reply = client.post(f"{BASE}/instances", json={"instance": restore})
    assert "instances: limit 1, in use 1" in over_limit(reply)


def test_a_growing_resize_is_counted_while_it_runs(client: FlaskClient, world: Any) -> None:
    with_quotas(world, ram=1536)
    small = active(client, world)  # 512 MB
    grow = {"resize": {"flavorRef": "4"}}  # 2048 MB
    reply = client.post(f"{BASE}/instances/{small}/action", json=grow)
    assert (
        over_limit(reply) == "Quota exceeded for ram: limit 1536 MB, in use 512 MB, asked 1536 MB"
    )
    reply = client.post(f"{BASE}/instances/{small}/action", json={"resize": {"flavorRef": "3"}})
    assert reply.status_code == 202, reply.get_json()
    # until the resize ends, its new flavor counts: 1024 of 1536 MB
    assert absolute(client)["total_ram_used"] == 1024
    assert "ram: limit 1536 MB, in use 1024 MB, asked 1024 MB" in over_limit(
        create(client, flavorRef="3")
    )


def test_backups_have_their_own_quota(client: FlaskClient, world: Any) -> None:
    with_quotas(world, backups=1)
    instance_id = active(client, world)
    body = {"backup": {"name": "b", "instance": instance_id}}
    first = client.post(f"{BASE}/backups", json=body)
    assert first.status_code == 202, first.get_json()
    world[3].drain(world[0])
    assert over_limit(client.post(f"{BASE}/backups", json=body)) == (
        "Quota exceeded for backups: limit 1, in use 1, asked 1"
    )
    backup_id = first.get_json()["backup"]["id"]
    assert client.delete(f"{BASE}/backups/{backup_id}").status_code == 202
    assert client.post(f"{BASE}/backups", json=body).status_code == 202


def test_a_failed_backup_holds_no_quota(client: FlaskClient, world: Any) -> None:
    with_quotas(world, backups=1)
    instance_id = active(client, world)
    world[2].backup_error = AgentError("agent Backup failed: disk is full")
    body = {"backup": {"name": "b", "instance": instance_id}}
    assert client.post(f"{BASE}/backups", json=body).status_code == 202
    world[3].drain(world[0])
    with world[0].db.session() as session:
        assert session.scalars(select(Backup.status)).all() == ["FAILED"]
    assert absolute(client)["total_backups_used"] == 0
    assert client.post(f"{BASE}/backups", json=body).status_code == 202


def test_unlimited_is_minus_one(client: FlaskClient, admin: FlaskClient, world: Any) -> None:
    with_quotas(world, instances=0)
    assert "limit 0, in use 0, asked 1" in over_limit(create(client))
    admin.put(mgmt(world), json={"quotas": {"instances": -1}})
    assert create(client).status_code == 202


def test_five_concurrent_creates_leave_at_most_the_limit(
    app: Flask, world: Any, client: FlaskClient
) -> None:
    with_quotas(world, instances=2)
    assert world[0].settings.database_url.startswith("sqlite:///")  # a file, shared
    token = client.environ_base["HTTP_X_AUTH_TOKEN"]
    start = threading.Barrier(5)
    replies: list[int] = []

    def send() -> None:
        own = logged_in(app.test_client(), token)
        start.wait()
        replies.append(create(own).status_code)

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(replies) == [202, 202, 413, 413, 413]
    assert live_instances(world) == 2


def test_a_reservation_waits_for_the_one_holding_the_projects_lock(world: Any) -> None:
    """Two transactions: the second counts only once the first has committed its row."""
    services = world[0]
    with_quotas(world, instances=1)
    asked = {Resource.INSTANCES: 1}
    outcome: list[str] = []
    first = services.db.new_session()
    quotas.reserve(first, services.settings, "proj1", asked)

    def second() -> None:
        with services.db.session() as session:
            try:
                quotas.reserve(session, services.settings, "proj1", asked)
                outcome.append("reserved")
            except OverLimit as exc:
                outcome.append(exc.message)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert outcome == []  # still waiting for the lock
    first.add(
        Instance(
            project_id="proj1",
            name="a",
            flavor_id="1",
            datastore="postgresql",
            datastore_version="15",
            volume_size=1,
        )
    )
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == ["Quota exceeded for instances: limit 1, in use 1, asked 1"]


def test_other_projects_and_scratch_instances_do_not_count(world: Any) -> None:
    services = world[0]
    with services.db.session() as session:
        for project, purpose in (("proj2", None), ("proj1", "verify")):
            session.add(
                Instance(
                    project_id=project,
                    name="x",
                    flavor_id="4",
                    datastore="postgresql",
                    datastore_version="15",
                    volume_size=5,
                    purpose=purpose,
                )
            )
        session.add(
            Instance(
                project_id="proj1",
                name="gone",
                flavor_id="4",
                datastore="postgresql",
                datastore_version="15",
                volume_size=5,
                deleted_at=dt.datetime(2024, 1, 1),
            )
        )
    with services.db.session() as session:
        assert quotas.in_use(session, "proj1") == dict.fromkeys(Resource, 0)
        assert quotas.in_use(session, "proj2")[Resource.RAM] == 2048


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"quotas": {"disks": 3}}, 400, ["disks", "instances, backups, volumes, ram"]),
        ({"quotas": {"instances": "5"}}, 400, ["integer"]),
        ({"quotas": {"instances": True}}, 400, ["integer"]),
        ({"quotas": {"instances": 2.5}}, 400, ["integer"]),
        ({"quotas": {"instances": -2}}, 400, ["-1", "got -2"]),
        ({"quotas": {"instances": 2**31}}, 400, ["2147483647"]),
        ({"quotas": {}}, 400, ["at least one"]),
        ({"quotas": {"instances": None}}, 400, ["at least one"]),
        ({"quota": {"instances": 1}}, 400, ['{"quotas"']),
        ({"quotas": [1]}, 400, ['{"quotas"']),
    ],
)
def test_bad_quota_updates_are_refused(
    admin: FlaskClient, world: Any, body: Any, status: int, words: list[str]
) -> None:
    reply = admin.put(mgmt(world), json=body)
    assert reply.status_code == status, reply.get_json()
    message = reply.get_json()["badRequest"]["message"]
    for word in words:
        assert word in message
    with world[0].db.session() as session:
        assert session.scalars(select(ProjectQuota)).all() == []


def test_quotas_of_an_unknown_project_are_404(admin: FlaskClient, world: Any) -> None:
    assert admin.get(mgmt(world, "nobody")).status_code == 404
    reply = admin.put(mgmt(world, "nobody"), json={"quotas": {"instances": 1}})
    assert reply.status_code == 404
    assert "nobody" in reply.get_json()["itemNotFound"]["message"]


def test_a_project_may_be_named_by_its_name(admin: FlaskClient, world: Any) -> None:
    admin_id = admin_project_id(world[0])
    reply = admin.put(mgmt(world, world[0].settings.admin_project), json={"quotas": {"ram": 9}})
    assert reply.status_code == 200
    with world[0].db.session() as session:
        assert session.get(ProjectQuota, (admin_id, "ram")).hard_limit == 9


def test_quota_routes_are_the_admins(app: Flask, world: Any) -> None:
    member = logged_in(app.test_client(), member_of(world[0]))
    assert member.get("/v1.0/proj1/mgmt/quotas/proj1").status_code == 403
    assert (
        member.put("/v1.0/proj1/mgmt/quotas/proj1", json={"quotas": {"instances": 99}}).status_code
        == 403
    )
    assert member.get(mgmt(world)).status_code == 403
    for roles in (("member",), ("reader",)):  # of the admin project, but not its admin
        token = member_of(world[0], admin_project_id(world[0]), roles=roles)
        assert logged_in(app.test_client(), token).get(mgmt(world)).status_code == 403
    with world[0].db.session() as session:
        assert session.scalars(select(ProjectQuota)).all() == []


@dataclasses.dataclass
class KeystoneSays:
    """A stand-in for a Keystone: every token is the admin's of the admin project."""

    admin_project: str

    def validate(self, token: str) -> Identity:
        now = dt.datetime(2030, 1, 1)
        return Identity(
            user_id="u1",
            user_name="ops",
            project_id="p-admin",
            project_name=self.admin_project,
            roles=("admin", "member", "reader"),
            role_ids=(),
            methods=("token",),
            issued_at=now,
            expires_at=now,
            audit_id="a1",
        )


def test_with_a_keystone_any_well_formed_project_may_get_quotas(world: Any) -> None:
    services = world[0]
    services.settings = dataclasses.replace(services.settings, auth_url="http://ks.test:5000/v3")
    checks = auth.Auth(services.settings, KeystoneSays(services.settings.admin_project), None)
    client = logged_in(create_app(services, checks).test_client(), "any")
    reply = client.put("/v1.0/p-admin/mgmt/quotas/0f3c9a11b2", json={"quotas": {"instances": 4}})
    assert reply.status_code == 200, reply.get_json()
    shown = client.get("/v1.0/p-admin/mgmt/quotas/0f3c9a11b2").get_json()["quotas"]
    assert shown[0] == {"resource": "instances", "in_use": 0, "reserved": 0, "limit": 4}
    assert client.get("/v1.0/p-admin/mgmt/quotas/bad.id").status_code == 400
