"""openstacksdk, which Ansible's ``openstack.cloud`` builds on, drives Cellar's instances,
databases and users through ``conn.database`` after a password login."""

from __future__ import annotations

import time

import openstack
import pytest

from tests.integration.stack import Api, Stack


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # the SDK on its own future
def test_openstacksdk_creates_lists_shows_and_deletes(api: Api, stack: Stack) -> None:
    assert stack.identity is not None
    name, password, _user_id = stack.identity.user(api.project)
    conn = openstack.connect(
        load_yaml_config=False,
        load_envvars=False,
        auth_type="password",
        auth={
            "auth_url": stack.identity.url,
            "username": name,
            "password": password,
            "project_name": api.project_name,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
    )
    try:
        made = conn.database.create_instance(
            name="via-sdk",
            flavor="1",
            volume={"size": 1},
            datastore={"type": "postgresql", "version": "15"},
        )
        assert made.status == "BUILD"
        assert made.id in [i.id for i in conn.database.instances()]
        view = api.wait_instance(made.id, {"ACTIVE", "ERROR"})
        assert view["status"] == "ACTIVE", view.get("fault")
        shown = conn.database.get_instance(made.id)
        assert (shown.name, shown.status, shown.datastore["type"]) == (
            "via-sdk",
            "ACTIVE",
            "postgresql",
        )

        conn.database.create_database(made.id, name="sdk_db")
        conn.database.create_user(made.id, name="sdkuser", password="sdk-Pass-1",
                                  databases=[{"name": "sdk_db"}])  # fmt: skip
        end, dbs, users = time.monotonic() + 60, set(), set()
        while time.monotonic() < end:
            dbs = {d.name for d in conn.database.databases(made.id)}
            users = {u.name for u in conn.database.users(made.id)}
            if "sdk_db" in dbs and "sdkuser" in users:
                break
            time.sleep(0.3)
        assert "sdk_db" in dbs and "sdkuser" in users

        conn.database.delete_instance(made.id)
        assert api.wait_instance(made.id, {"GONE", "ERROR"})["status"] == "GONE"
        assert made.id not in [i.id for i in conn.database.instances()]
    finally:
        conn.close()
