"""Version discovery and the health check: what clients ask before they log in."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from api.app import create_app


def test_the_versioned_url_answers_with_its_version_document(world: Any) -> None:
    client = create_app(world[0]).test_client()  # no token: discovery comes before login
    listed = client.get("/").get_json()["versions"]
    reply = client.get("/v1.0/")
    assert reply.status_code == 200
    version = reply.get_json()["version"]
    assert version == listed[0]
    assert (version["id"], version["status"]) == ("v1.0", "CURRENT")
    assert version["links"] == [{"href": "http://localhost/v1.0/", "rel": "self"}]


def test_the_health_check_says_ok_while_the_metadata_database_answers(world: Any) -> None:
    client = create_app(world[0]).test_client()
    reply = client.get("/healthcheck")
    assert (reply.status_code, reply.mimetype, reply.text) == (200, "text/plain", "OK\n")
    assert client.head("/healthcheck").status_code == 204


def test_the_health_check_fails_when_the_metadata_database_does_not_answer(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = world[0]
    client = create_app(services).test_client()

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(services.db, "session", gone)
    reply = client.get("/healthcheck")
    assert reply.status_code == 503
    assert "metadata database" in reply.text
