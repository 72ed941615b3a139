"""Lists are joined from the views the API keeps, and show every committed change."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import pages, views
from api.app import create_app
from cellar.models import Instance
from tests.unit.api.support import logged_in, member_of
from tests.unit.api.test_instance_views import (
    instance,
    listed,
    shown,
    statements,
    varied_project,
)


@pytest.fixture
def client(world: Any) -> FlaskClient:
    services = world[0]
    return logged_in(create_app(services).test_client(), member_of(services))


def full_loads(seen: list[str]) -> int:
    return sum("FROM configurations" in s for s in seen)


def test_a_change_from_another_process_shows_on_the_next_list(
    client: FlaskClient, world: Any
) -> None:
    services = world[0]
    varied_project(services)
    listed(client)
    plain = sqlite3.connect(services.settings.home / "cellar.db")
    plain.execute("UPDATE tasks SET step = 'start_engine' WHERE instance_id = 'inst-06'")
    plain.execute("UPDATE instances SET deleted_at = '2025-03-02 00:00:00' WHERE id = 'inst-04'")
    plain.commit()
    plain.close()
    by_id = {v["id"]: v for v in listed(client)}
    assert by_id["inst-06"]["task"]["step"] == "start_engine"
    assert "inst-04" not in by_id
    assert [r["id"] for r in by_id["inst-02"]["replicas"]] == ["inst-03"]
    assert list(by_id.values()) == [shown(client, i) for i in by_id]


def test_a_new_instance_takes_its_place_in_the_order(client: FlaskClient, world: Any) -> None:
    services = world[0]
    ids = varied_project(services)
    listed(client)
    with services.db.session() as session:
        session.add(instance(0))  # made before all the others
        session.add(instance(14, project_id="proj2"))
    assert [v["id"] for v in listed(client)] == [*ids[::-1], "inst-00"]  # newest first
    first = client.get("/v1.0/proj1/instances?limit=2").get_json()
    assert [v["id"] for v in first["instances"]] == ids[:-3:-1]
    assert first["links"][0]["href"].endswith(f"?limit=2&marker={ids[-2]}")
    following = client.get(f"/v1.0/proj1/instances?limit=2&marker={ids[-2]}").get_json()
    assert [v["id"] for v in following["instances"]] == [ids[-3], ids[-4]]
    last = client.get(f"/v1.0/proj1/instances?limit=2&marker={ids[0]}").get_json()
    assert [v["id"] for v in last["instances"]] == ["inst-00"] and "links" not in last


def test_each_project_keeps_its_own(world: Any) -> None:
    services = world[0]
    varied_project(services)
    app = create_app(services)
    ours = logged_in(app.test_client(), member_of(services))
    theirs = logged_in(app.test_client(), member_of(services, "proj2"))
    assert [v["id"] for v in theirs.get("/v1.0/proj2/instances").get_json()["instances"]] == [
        "inst-11"
    ]
    listed(ours)
    with services.db.session() as session:
        session.get(Instance, "inst-11").name = "renamed"
        session.get(Instance, "inst-01").name = "ours-renamed"
    again = theirs.get("/v1.0/proj2/instances").get_json()["instances"]
    assert [(v["id"], v["name"]) for v in again] == [("inst-11", "renamed")]
    assert listed(ours)[-1]["name"] == "ours-renamed"


def test_a_feed_not_read_for_long_starts_again_from_scratch(
    client: FlaskClient, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = world[0]
    varied_project(services)
    whole = listed(client)
    with statements(services) as seen:
        listed(client)
    assert full_loads(seen) == 0
    monkeypatch.setattr(pages, "STALE", -1.0)
    with statements(services) as seen:
        assert listed(client) == whole
    assert full_loads(seen) == 1


def test_a_failure_while_keeping_up_drops_what_is_kept(
    client: FlaskClient, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = world[0]
    varied_project(services)
    listed(client)
    with services.db.session() as session:
        session.get(Instance, "inst-01").name = "renamed"

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(pages, "inputs_of", broken)
    assert client.get("/v1.0/proj1/instances").status_code == 500
    monkeypatch.setattr(pages, "inputs_of", views.inputs_of)
    with statements(services) as seen:
        page = listed(client)
    assert full_loads(seen) == 1 and page[-1]["name"] == "renamed"


def test_only_the_most_recently_listed_projects_are_kept(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = world[0]
    varied_project(services)
    monkeypatch.setattr(pages, "PROJECTS_KEPT", 1)
    app = create_app(services)
    ours = logged_in(app.test_client(), member_of(services))
    theirs = logged_in(app.test_client(), member_of(services, "proj2"))
    whole = listed(ours)
    assert len(theirs.get("/v1.0/proj2/instances").get_json()["instances"]) == 1
    with statements(services) as seen:
        assert listed(ours) == whole
    assert full_loads(seen) == 1  # proj2 took its place
