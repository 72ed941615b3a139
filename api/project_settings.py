"""/settings: a project's own rules for its self-service actions.

Anyone in the project may read them; only the project's admins (or Cellar's) change them.
Today there is one: ``approve_write_credentials``, whether write access through a debug
credential waits for another member's approval.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from api import audit
from api.schemas import parse
from api.schemas.credentials import SetProjectRules
from api.state import services
from cellar.errors import Forbidden, InvalidInput
from cellar.identity.store import Identity
from cellar.models import ProjectSetting

blueprint = Blueprint("project_settings", __name__)

ROUTE = "/v1.0/<project_id>/settings"


def _view(row: ProjectSetting | None) -> dict[str, object]:
    return {"approve_write_credentials": bool(row and row.approve_write_credentials)}


@blueprint.get(ROUTE)
def show(project_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        return jsonify({"settings": _view(session.get(ProjectSetting, project_id))})


@blueprint.put(ROUTE)
def update(project_id: str) -> ResponseReturnValue:
    data = parse(SetProjectRules)
    who: Identity = g.identity
    if not who.has("admin"):
        raise Forbidden("only an admin of the project changes its settings")
    value = data.get("approve_write_credentials")
    if not isinstance(value, bool):
        raise InvalidInput("approve_write_credentials must be true or false")
    with services().db.session() as session:
        row = session.get(ProjectSetting, project_id)
        if row is None:
            row = ProjectSetting(project_id=project_id)
            session.add(row)
        row.approve_write_credentials = value
        audit.record(session, project_id, "project.settings", "project", project_id,
                     {"approve_write_credentials": value})  # fmt: skip
        return jsonify({"settings": _view(row)})
