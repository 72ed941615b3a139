"""GET /audit: a project's own rows, filters and pages; admins see all and check the chain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from api.app import create_app
from cellar import audit
from cellar.models import AuditEvent
from tests.unit.api.support import admin_project_id, admin_token, logged_in, member_of


def _add(services: Any, project: str, n: int, **fields: Any) -> None:
    with services.db.session() as session:
        for i in range(n):
            row = {
                "project_id": project,
                "request_id": f"req-{project}-{i}",
                "action": "instance.create",
                "target_type": "instance",
                "target_id": f"{project}-i{i}",
                "details": {},
                **fields,
            }
            audit.append(session, AuditEvent(**row))


def test_members_and_readers_see_only_their_project(world: Any) -> None:
    services = world[0]
    _add(services, "proj1", 3)
    _add(services, "proj2", 2)
    app = create_app(services)
    for roles in (("member",), ("reader",)):
        client = logged_in(app.test_client(), member_of(services, "proj1", roles))
        events = client.get("/v1.0/proj1/audit").get_json()["events"]
        assert {e["project_id"] for e in events} == {"proj1"}
        assert len([e for e in events if e["action"] == "instance.create"]) == 3
        assert client.get("/v1.0/proj2/audit").status_code == 403


def test_filters_by_user_target_action_and_time(world: Any) -> None:
    services = world[0]
    _add(services, "proj1", 2, user_id="u1", user_name="alice")
    _add(services, "proj1", 1, user_id="u2", user_name="bob", action="backup.create")
    with services.db.session() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.target_id == "proj1-i1", AuditEvent.user_id == "u1")
            .values(created=dt.datetime(2020, 1, 1))
        )
    client = logged_in(create_app(services).test_client(), member_of(services, "proj1"))

    def ids(query: str) -> list[str]:
        reply = client.get(f"/v1.0/proj1/audit?{query}")
        assert reply.status_code == 200, reply.get_json()
        return [e["target_id"] for e in reply.get_json()["events"]]

    assert sorted(ids("user=alice")) == ["proj1-i0", "proj1-i1"]
    assert ids("user=u2") == ["proj1-i0"]
    assert ids("action=backup.create") == ["proj1-i0"]
    assert ids("target=proj1-i1") == ["proj1-i1"]
    assert ids("user=alice&until=2021-01-01T00:00:00Z") == ["proj1-i1"]
    assert ids("user=alice&since=2021-01-01T00:00:00Z") == ["proj1-i0"]
    bad = client.get("/v1.0/proj1/audit?since=yesterday")
    assert bad.status_code == 400 and "ISO 8601" in bad.get_json()["badRequest"]["message"]


def test_pages_follow_the_next_link(world: Any) -> None:
    services = world[0]
    _add(services, "proj1", 7)
    client = logged_in(create_app(services).test_client(), member_of(services, "proj1"))
    seen: list[str] = []
    url = "/v1.0/proj1/audit?limit=3&action=instance.create"
    for _ in range(5):
        reply = client.get(url).get_json()
        seen += [e["target_id"] for e in reply["events"]]
        nxt = [link["href"] for link in reply.get("links", []) if link["rel"] == "next"]
        if not nxt:
            break
        url = nxt[0].replace("http://localhost", "")
    assert seen == [f"proj1-i{i}" for i in range(6, -1, -1)]


def test_an_admin_sees_every_project_and_may_narrow(world: Any) -> None:
    services = world[0]
    _add(services, "proj1", 2)
    _add(services, "proj2", 1)
    client = logged_in(create_app(services).test_client(), admin_token(services))
    admin = client.get("/v1.0/proj1/audit").get_json()  # in another project: its rows
    assert {e["project_id"] for e in admin["events"]} == {"proj1"}
    home = admin_project_id(services)
    everything = client.get(f"/v1.0/{home}/audit?action=instance.create").get_json()["events"]
    assert {e["project_id"] for e in everything} == {"proj1", "proj2"}
    narrowed = client.get(f"/v1.0/{home}/audit?project_id=proj2").get_json()["events"]
    assert {e["project_id"] for e in narrowed} == {"proj2"}


def test_the_verify_route_is_for_admins_and_names_a_changed_row(world: Any) -> None:
    services = world[0]
    _add(services, "proj1", 4)
    app = create_app(services)
    home = admin_project_id(services)
    member = logged_in(app.test_client(), member_of(services, "proj1"))
    assert member.get("/v1.0/proj1/mgmt/audit/verify").status_code == 403
    admin = logged_in(app.test_client(), admin_token(services))
    good = admin.get(f"/v1.0/{home}/mgmt/audit/verify").get_json()["audit"]
    assert good["intact"] is True and good["rows"] >= 4 and good["findings"] == []
    with services.db.session() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.target_id == "proj1-i2").values(action="x")
        )
    bad = admin.get(f"/v1.0/{home}/mgmt/audit/verify").get_json()["audit"]
    assert bad["intact"] is False
    assert "changed" in bad["findings"][0]["problem"]


def test_a_refused_request_is_recorded_with_who_and_from_where(world: Any) -> None:
    services = world[0]
    client = logged_in(create_app(services).test_client(), member_of(services, "proj1"))
    assert client.get("/v1.0/proj2/instances").status_code == 403
    with services.db.session() as session:
        rows = session.query(AuditEvent).filter(AuditEvent.action == "auth.denied").all()
        assert len(rows) == 1
        row = rows[0]
        assert row.project_id == "proj2" and row.outcome == "403"
        assert row.user_name.startswith("proj1-") and row.remote_addr == "127.0.0.1"
        assert row.details == {"scoped_to": "proj1"}
