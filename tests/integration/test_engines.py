"""MariaDB and Redis through the same API: a user made by Cellar gets exactly its rights."""

from __future__ import annotations

import pymysql
import pytest
import redis

from tests.integration.stack import Api, leftovers

PASSWORD = "Engine-pass-42"


def create(api: Api, datastore: str, version: str, **extra: object) -> dict[str, object]:
    body = {
        "name": f"{datastore}-it",
        "flavorRef": "2",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": version},
        **extra,
    }
    reply = api.call("POST", "/instances", json={"instance": body})
    assert reply.status_code == 202, reply.text
    instance_id = reply.json()["instance"]["id"]
    view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
    assert view["status"] == "ACTIVE", view.get("fault")
    return view


def delete(api: Api, instance_id: str) -> None:
    assert api.call("DELETE", f"/instances/{instance_id}").status_code == 202
    assert api.wait_instance(instance_id, {"GONE", "ERROR"})["status"] == "GONE"
    assert leftovers(api.project) == []


def test_mariadb_user_sees_exactly_its_databases(api: Api) -> None:
    view = create(
        api,
        "mariadb",
        "10.11",
        databases=[{"name": "shop"}, {"name": "secret"}],
        users=[{"name": "app", "password": PASSWORD, "databases": [{"name": "shop"}]}],
    )
    conn_info = view["connection"]
    assert isinstance(conn_info, dict)
    conn = pymysql.connect(
        host=conn_info["host"], port=conn_info["port"], user="app", password=PASSWORD,
        database="shop", connect_timeout=10,
    )  # fmt: skip
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
            cursor.execute("INSERT INTO items VALUES (1, 'apple')")
            conn.commit()
            cursor.execute("SELECT name FROM items")
            assert cursor.fetchall() == (("apple",),)
            cursor.execute("SHOW DATABASES")
            visible = {row[0] for row in cursor.fetchall()}
            assert "shop" in visible and "secret" not in visible
            with pytest.raises(pymysql.err.OperationalError):
                cursor.execute("USE secret")
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(
            host=conn_info["host"], port=conn_info["port"], user="app", password="wrong",
            connect_timeout=10,
        )  # fmt: skip
    users = api.call("GET", f"/instances/{view['id']}/users").json()["users"]
    assert [(u["name"], [d["name"] for d in u["databases"]]) for u in users] == [("app", ["shop"])]
    delete(api, str(view["id"]))


def test_redis_user_authenticates_and_databases_are_refused(api: Api) -> None:
    refused = api.call(
        "POST",
        "/instances",
        json={"instance": {"name": "r", "flavorRef": "1", "volume": {"size": 1},
                           "datastore": {"type": "redis"}, "databases": [{"name": "x"}]}},
    )  # fmt: skip
    assert refused.status_code == 422
    assert "no named databases" in refused.json()["unprocessableEntity"]["message"]
    view = create(api, "redis", "7.0", users=[{"name": "cache", "password": PASSWORD}])
    conn_info = view["connection"]
    assert isinstance(conn_info, dict)
    client = redis.Redis(
        host=conn_info["host"], port=conn_info["port"], username="cache", password=PASSWORD,
        socket_timeout=10,
    )  # fmt: skip
    try:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
    finally:
        client.close()
    anonymous = redis.Redis(host=conn_info["host"], port=conn_info["port"], socket_timeout=10)
    try:
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            anonymous.get("greeting")
    finally:
        anonymous.close()
    listed = api.call("GET", f"/instances/{view['id']}/databases")
    assert listed.status_code == 422
    users = api.call("GET", f"/instances/{view['id']}/users").json()["users"]
    assert [u["name"] for u in users] == ["cache"]
    delete(api, str(view["id"]))
