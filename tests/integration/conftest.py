"""Integration fixtures: one real Cellar stack per test session.

``CELLAR_TEST_PROFILE=production`` runs the same tests with the metadata in a real
PostgreSQL, the broker a real RabbitMQ and the tokens a real Keystone's, all started here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import engines
from tests.integration.identity import Identity
from tests.integration.keystone import KeystoneServer, installed
from tests.integration.services import PostgresServer, RabbitServer
from tests.integration.stack import Api, Stack, leftovers, remove_leftovers, start_stack

PROFILE = os.environ.get("CELLAR_TEST_PROFILE", "embedded")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    """A private Keystone (Debian's) for the session: the production profile's identity."""
    if not installed():
        raise RuntimeError("Keystone is not installed here: run scripts/test-deps.sh")
    server = KeystoneServer(tmp_path_factory.mktemp("keystone"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cellar")
    extra: dict[str, str] = {}
    identity: Identity | None = None
    servers: list[PostgresServer | RabbitServer] = []
    saved = {k: v for k, v in os.environ.items() if k.startswith("CELLAR_")}
    cleanup: list[Path] = []
    try:
        if PROFILE == "production":
            # the servers run as their own users, who cannot enter pytest's private folders
            shared = Path(tempfile.mkdtemp(prefix="cellar-services-"))
            shared.chmod(0o755)
            cleanup.append(shared)
            postgres, rabbit = PostgresServer(shared / "pg"), RabbitServer(shared / "rabbit")
            for server in (postgres, rabbit):
                servers.append(server)
                server.start()
            extra = {"CELLAR_DATABASE_URL": postgres.url, "CELLAR_BROKER_URL": rabbit.url}
            keystone: KeystoneServer = request.getfixturevalue("keystone")
            extra.update(keystone.cellar_env())
            identity = keystone.admin()
        home = root / "home"
        home.mkdir()
        running = start_stack(home, extra, identity)
        engines.CA_FILE = home / "ca.crt"
        try:
            yield running
        finally:
            running.stop()
    finally:
        for server in reversed(servers):
            server.stop()
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        for key in [k for k in os.environ if k.startswith("CELLAR_")]:
            del os.environ[key]
        os.environ.update(saved)


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.url, identity=stack.identity)
    yield client
    left = leftovers(client.project)
    remove_leftovers(client.project)
    assert not left, f"the test left Docker resources behind: {left}"
