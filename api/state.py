"""Access to the running app's services from a request."""

from __future__ import annotations

from flask import current_app

from taskmanager.context import Services


def services() -> Services:
    """The services of the app that handles the current request."""
    found = current_app.extensions["cellar"]
    assert isinstance(found, Services)
    return found
