"""The dashboard's blueprint and what every page is rendered with."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, session

from api import auth

blueprint = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)


def is_admin() -> bool:
    settings = auth.current().settings
    return "admin" in session.get("roles", ()) and session.get("project_name") == (
        settings.admin_project
    )


def page(template: str, command: str, **values: Any) -> str:
    """A page, with the equivalent ``cellar`` command shown under it."""
    return render_template(
        template,
        command=command,
        user_name=session.get("user_name", ""),
        project_id=session.get("project_id", ""),
        project_name=session.get("project_name", ""),
        projects=session.get("projects", []),
        csrf=session.get("csrf", ""),
        admin=is_admin(),
        **values,
    )
