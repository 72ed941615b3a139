"""The fake cloud the CLI's tests log in to, with the OS_* variables set for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.cli.support import API, AUTH_URL, PASSWORD, FakeCloud


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCloud:
    """A fake cloud with ``alice`` in project ``shop`` (``p-1``) set in the OS_* variables."""
    for name in list(os.environ):
        if name.startswith("OS_") or name in ("CELLAR_URL", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, value in (
        ("OS_AUTH_URL", AUTH_URL),
        ("OS_USERNAME", "alice"),
        ("OS_PASSWORD", PASSWORD),
        ("OS_PROJECT_NAME", "shop"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_IDENTITY_API_VERSION", "3"),
    ):
        monkeypatch.setenv(name, value)
    found = FakeCloud()
    found.answers[("GET", f"{API}/p-1/instances")] = (200, {"instances": []})
    return found
