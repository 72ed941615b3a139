"""The scrape token of ``/metrics``: the setting's, or a private file made once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cellar import settings as settings_module
from cellar.errors import CellarError
from cellar.scrape_token import scrape_token, token_path
from cellar.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CELLAR_METRICS_TOKEN", raising=False)
    return settings_module.load()


def test_the_file_is_made_once_readable_by_its_owner_alone(settings: Settings) -> None:
    token = scrape_token(settings)

    path = token_path(settings)
    assert path == settings.home / "metrics-token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert scrape_token(settings) == token and len(token) >= 40
    assert [p.name for p in settings.home.iterdir()] == ["metrics-token"]  # no scratch left


def test_a_file_already_there_is_kept(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    token_path(settings).write_text("chosen-by-hand\n")

    assert scrape_token(settings) == "chosen-by-hand"


def test_the_setting_wins_and_is_never_shown(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLAR_METRICS_TOKEN", "from-the-environment")
    given = settings_module.load()

    assert scrape_token(given) == "from-the-environment"
    assert not token_path(given).exists()
    assert "from-the-environment" not in repr(given)


def test_an_empty_file_is_an_error_that_says_what_to_do(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    token_path(settings).write_text("\n")

    with pytest.raises(CellarError, match="delete it"):
        scrape_token(dataclasses.replace(settings))
