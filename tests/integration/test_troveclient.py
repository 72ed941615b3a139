"""The stock python-troveclient drives Cellar unchanged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from troveclient import exceptions
from troveclient.v1 import client as trove_client

from tests.integration.stack import Api, Stack


def test_stock_client(api: Api, stack: Stack) -> None:
    """Logged in with a keystoneauth1 Password session; the endpoint from the catalog."""
    assert stack.identity is not None
    name, password, _user_id = stack.identity.user(api.project)
    auth = v3.Password(
        auth_url=stack.identity.url,
        username=name,
        password=password,
        project_name=api.project_name,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    trove = trove_client.Client(session=ks_session.Session(auth=auth))

    instance = trove.instances.create(
        "via-troveclient",
        "1",
        volume={"size": 1},
        datastore="postgresql",
        datastore_version="15",
        databases=[{"name": "first"}],
    )
    assert instance.status == "BUILD"
    assert [i.id for i in trove.instances.list()] == [instance.id]
    view = api.wait_instance(instance.id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    shown = trove.instances.get(instance.id)
    assert (shown.name, shown.status) == ("via-troveclient", "ACTIVE")

    trove.databases.create(instance.id, [{"name": "second"}])
    trove.users.create(
        instance.id,
        [{"name": "carol", "password": "c4rol-pass", "databases": [{"name": "second"}]}],
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        dbs = {d.name for d in trove.databases.list(instance.id)}
        users = {u.name for u in trove.users.list(instance.id)}
        if {"first", "second"} <= dbs and "carol" in users:
            break
        time.sleep(0.3)
    assert {"first", "second"} <= dbs
    assert "carol" in users
    assert {f.id for f in trove.flavors.list()} >= {1, 2, 3, 4}

    running = trove.instances.configuration(instance.id).configuration  # configuration default
    assert int(running["max_connections"]) >= 10 and "work_mem" in running

    made = trove.backup_strategies.create(instance_id=instance.id, swift_container="team-a")
    assert (made.instance_id, made.swift_container) == (instance.id, "team-a")
    listed = trove.backup_strategies.list(instance_id=instance.id, project_id=api.project)
    assert [s.swift_container for s in listed] == ["team-a"]
    trove.backup_strategies.delete(instance_id=instance.id, project_id=api.project)
    assert trove.backup_strategies.list(instance_id=instance.id) == []

    user, root_password = trove.root.create_instance_root(instance.id, "r00t-Pass-word")
    assert (user, root_password) == ("postgres", "r00t-Pass-word")
    assert trove.root.is_instance_root_enabled(instance.id).rootEnabled is True
    trove.root.disable_instance_root(instance.id)  # openstack database root disable
    assert trove.root.is_instance_root_enabled(instance.id).rootEnabled is False

    check_logs(trove, instance.id)

    trove.instances.delete(instance.id)
    assert api.wait_instance(instance.id, {"GONE", "ERROR"})["status"] == "GONE"


def check_logs(trove: trove_client.Client, instance_id: str) -> None:
    """``openstack database log list/show/publish/discard``; enable is refused (SYS log)."""
    logs = {log.name: log for log in trove.instances.log_list(instance_id)}
    assert logs["postgresql"].type == "SYS" and logs["postgresql"].size > 0
    published = trove.instances.log_action(instance_id, "postgresql", publish=True)
    assert published.published >= logs["postgresql"].size and published.prefix
    if published.container.startswith("file://"):
        folder = Path(published.container.removeprefix("file://"))
        assert (folder / "000001").stat().st_size > 0 and (folder / "metafile").exists()
    shown = trove.instances.log_show(instance_id, "postgresql")
    assert (shown.metafile, shown.published) == (published.metafile, published.published)
    with pytest.raises(exceptions.BadRequest, match="system log"):
        trove.instances.log_action(instance_id, "postgresql", enable=True)
    discarded = trove.instances.log_action(instance_id, "postgresql", discard=True)
    assert (discarded.published, discarded.status) == (0, "Ready")
