"""The dashboard on fakes, through Flask's test client: log in, create, act, log out.

The browser test (tests/integration/test_dashboard_browser.py) does the same in Chromium
against real instances; these check the pages' logic and their refusals quickly.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import task_wait
from api.app import create_app
from cellar.identity.bootstrap import bootstrap, openrc_path
from cellar.models import MetricSample, utcnow


def admin_password(services: Any) -> str:
    bootstrap(services.settings, services.db)
    for line in openrc_path(services.settings).read_text().splitlines():
        if line.startswith("export OS_PASSWORD="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise AssertionError("no OS_PASSWORD in admin-openrc")


@pytest.fixture
def browser(world: Any) -> FlaskClient:
    """A client logged in to the dashboard as the admin."""
    client = create_app(world[0]).test_client()
    reply = client.post(
        "/dashboard/login",
        data={"method": "password", "username": "admin", "password": admin_password(world[0]),
              "project": "admin"},
    )  # fmt: skip
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return client


def csrf_of(client: FlaskClient, path: str = "/dashboard/instances/new") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found is not None
    return found.group(1)


def create(client: FlaskClient, world: Any, **extra: str) -> str:
    form = {"csrf": csrf_of(client), "name": "shop", "datastore": "postgresql/15",
            "flavor": "2", "volume": "1", "databases": "orders",
            "user_name": "app", "user_password": "S3cret-pass", **extra}  # fmt: skip
    reply = client.post("/dashboard/instances/new", data=form)
    assert reply.status_code == 302, reply.get_data(as_text=True)
    world[3].drain(world[0])
    return reply.headers["Location"].rsplit("/", 1)[-1]


def test_pages_need_a_login(world: Any) -> None:
    client = create_app(world[0]).test_client()
    reply = client.get("/dashboard/instances")
    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/dashboard/login?next=/dashboard/instances")
    wrong = client.post(
        "/dashboard/login",
        data={"method": "password", "username": "admin", "password": "nope", "project": "admin"},
    )
    assert wrong.status_code == 401
    assert "is not right" in wrong.get_data(as_text=True)


def test_a_form_without_the_csrf_token_is_refused(browser: FlaskClient) -> None:
    reply = browser.post("/dashboard/instances/new", data={"name": "x"})
    assert reply.status_code == 400
    assert "stale or came from another site" in reply.get_data(as_text=True)


def test_create_shows_the_instance_with_its_connection_strings(
    browser: FlaskClient, world: Any
) -> None:
    instance_id = create(browser, world)
    page = browser.get(f"/dashboard/instances/{instance_id}").get_data(as_text=True)
    assert 'data-status="ACTIVE"' in page
    assert "psql &#34;host=" in page and "user=app dbname=orders" in page
    assert f"cellar instance show {instance_id}" in page
    again = browser.get(f"/dashboard/instances/{instance_id}/connect").get_data(as_text=True)
    assert "user=app dbname=orders" in again and "hx-trigger" not in again
    rows = browser.get("/dashboard/instances/rows").get_data(as_text=True)
    assert instance_id in rows and "ACTIVE" in rows


def test_a_refused_create_says_why_and_keeps_the_form(browser: FlaskClient) -> None:
    form = {"csrf": csrf_of(browser), "name": "", "datastore": "postgresql/15", "volume": "1"}
    reply = browser.post("/dashboard/instances/new", data=form)
    assert reply.status_code == 400
    assert 'id="create-error"' in reply.get_data(as_text=True)


def test_users_backups_and_a_restore_from_the_instance_page(
    browser: FlaskClient, world: Any
) -> None:
    instance_id = create(browser, world)
    token = csrf_of(browser)
    added = browser.post(
        f"/dashboard/instances/{instance_id}/users",
        data={"csrf": token, "name": "bob", "password": "B0b-pass-word", "databases": "orders"},
    )
    assert added.status_code == 302
    browser.post(f"/dashboard/instances/{instance_id}/backups", data={"csrf": token, "name": "b1"})
    world[3].drain(world[0])
    page = browser.get(f"/dashboard/instances/{instance_id}").get_data(as_text=True)
    assert "<li>bob: orders</li>" in page
    backups = browser.get("/dashboard/backups").get_data(as_text=True)
    backup_id = re.search(r'<tr data-id="([^"]+)">\s*<td>b1</td>', backups)
    assert backup_id is not None and "COMPLETED" in backups
    copy = create(browser, world, name="copy", backup=backup_id.group(1))
    shown = browser.get(f"/dashboard/instances/{copy}").get_data(as_text=True)
    assert 'data-status="ACTIVE"' in shown


def test_debug_access_shows_the_password_once_and_revokes_after_asking(
    browser: FlaskClient, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_wait, "WAIT_SECONDS", 0.0)  # the worker runs after each post
    instance_id = create(browser, world)
    token = csrf_of(browser)
    asked = browser.post(
        f"/dashboard/instances/{instance_id}/debug-access",
        data={"csrf": token, "reason": "INC-3: stuck order", "access": "read",
              "databases": "orders", "ttl_seconds": "600"},
    )  # fmt: skip
    shown = asked.get_data(as_text=True)
    assert asked.status_code == 200, shown
    user = re.search(r'<code id="debug-user">([^<]+)</code>', shown)
    password = re.search(r'<code id="debug-password">([^<]+)</code>', shown)
    assert user is not None and password is not None
    assert "cellar debug-access create" in shown
    world[3].drain(world[0])
    assert world[2].users[user.group(1)].password == password.group(1)
    page = browser.get(f"/dashboard/instances/{instance_id}").get_data(as_text=True)
    row = re.search(r'<tr data-id="([^"]+)"><td>' + user.group(1), page)
    assert row is not None and password.group(1) not in page and "INC-3: stuck order" in page
    revoke = f"/dashboard/instances/{instance_id}/debug-access/{row.group(1)}/revoke"
    question = browser.get(revoke).get_data(as_text=True)
    assert f"Revoke debug login {user.group(1)}?" in question
    assert user.group(1) in world[2].users  # asking changed nothing
    assert browser.post(revoke, data={"csrf": token}).status_code == 302
    world[3].drain(world[0])
    assert user.group(1) not in world[2].users
    page = browser.get(f"/dashboard/instances/{instance_id}").get_data(as_text=True)
    assert user.group(1) not in page
    refused = browser.post(
        f"/dashboard/instances/{instance_id}/debug-access",
        data={"csrf": token, "reason": "", "databases": "orders"},
    )
    assert refused.status_code == 302


def test_the_chart_draws_the_samples(browser: FlaskClient, world: Any) -> None:
    instance_id = create(browser, world)
    with world[0].db.session() as session:
        for minutes, total in ((3, 0), (2, 600), (1, 1800)):
            taken = utcnow() - dt.timedelta(minutes=minutes)
            values = {"connections": minutes, "transactions_total": total}
            session.add(MetricSample(instance_id=instance_id, taken=taken, values=values))
        session.commit()
    chart = browser.get(f"/dashboard/instances/{instance_id}/chart").get_data(as_text=True)
    assert 'data-metric="connections" data-points="3"' in chart
    assert 'data-metric="transactions_per_second" data-points="2"' in chart
    assert "transactions / s: now 20.0" in chart


def test_delete_asks_first(browser: FlaskClient, world: Any) -> None:
    instance_id = create(browser, world)
    asked = browser.get(f"/dashboard/instances/{instance_id}/delete").get_data(as_text=True)
    assert "Delete instance?" in asked and f"cellar instance delete {instance_id}" in asked
    done = browser.post(
        f"/dashboard/instances/{instance_id}/delete", data={"csrf": csrf_of(browser)}
    )
    assert done.status_code == 302 and done.headers["Location"] == "/dashboard/instances"
    world[3].drain(world[0])
    assert instance_id not in browser.get("/dashboard/instances").get_data(as_text=True)


def test_the_other_pages_render(browser: FlaskClient, world: Any) -> None:
    create(browser, world)
    for path, shows in (
        ("/dashboard/audit", "instance.create"),
        ("/dashboard/configurations", "max_connections"),
        ("/dashboard/admin", "Memory reserved by flavors: 512 MB"),
    ):
        reply = browser.get(path)
        assert reply.status_code == 200, path
        assert shows in reply.get_data(as_text=True), path


def test_log_out_ends_the_session(browser: FlaskClient) -> None:
    assert browser.post("/dashboard/logout", data={"csrf": csrf_of(browser)}).status_code == 302
    assert browser.get("/dashboard/instances").status_code == 302


def test_every_page_but_the_login_needs_a_session(world: Any) -> None:
    """Walk every dashboard route without a session: each sends to the login page."""
    app = create_app(world[0])
    client = app.test_client()
    open_pages = {"/dashboard/login", "/dashboard/static/<path:filename>"}
    walked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/dashboard") or rule.rule in open_pages:
            continue
        path = rule.rule.replace("<instance_id>", "i1").replace("<backup_id>", "b1")
        path = path.replace("<action>", "delete").replace("<credential_id>", "c1")
        path = path.replace("<verdict>", "approve")
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            reply = client.open(path, method=method, data={"csrf": "x"})
            assert reply.status_code == 302, (method, path)
            assert reply.headers["Location"].startswith("/dashboard/login"), (method, path)
            walked += 1
    assert walked >= 20
    script = client.get("/dashboard/static/htmx.min.js")
    assert script.status_code == 200 and b"htmx" in script.get_data()
    script.close()


def test_pages_forbid_framing_and_other_sites_scripts(browser: FlaskClient) -> None:
    reply = browser.get("/dashboard/instances")
    policy = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Cache-Control"] == "no-store"


def test_the_create_form_makes_replicas_and_shows_a_backups_window(
    browser: FlaskClient, world: Any
) -> None:
    source = create(browser, world)
    form = browser.get("/dashboard/instances/new").get_data(as_text=True)
    assert f'<option value="{source}"' in form  # an ACTIVE primary to replicate
    reply = browser.post(
        "/dashboard/instances/new",
        data={"csrf": csrf_of(browser), "name": "copies", "flavor": "2",
              "replica_of": source, "replica_count": "2"},
    )  # fmt: skip
    assert reply.status_code == 302, reply.get_data(as_text=True)
    world[3].drain(world[0])
    replica = reply.headers["Location"].rsplit("/", 1)[-1]
    page = browser.get(f"/dashboard/instances/{replica}").get_data(as_text=True)
    assert f"/dashboard/instances/{source}" in page and 'data-status="ACTIVE"' in page
    primary = browser.get(f"/dashboard/instances/{source}").get_data(as_text=True)
    assert primary.count('<li><a href="/dashboard/instances/') == 2  # its two replicas
    token = csrf_of(browser)
    browser.post(f"/dashboard/instances/{source}/backups", data={"csrf": token, "name": "w"})
    world[3].drain(world[0])
    backups = browser.get("/dashboard/backups").get_data(as_text=True)
    backup_id = re.search(r'<tr data-id="([^"]+)">\s*<td>w</td>', backups)
    assert backup_id is not None
    restore = browser.get(f"/dashboard/instances/new?backup={backup_id.group(1)}")
    assert 'id="recovery-window"' in restore.get_data(as_text=True)
