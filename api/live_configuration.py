"""``GET /instances/{id}/configuration``: the values the running engine has now for every
parameter a configuration group may set (``openstack database configuration default``)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.databases import BASE, live
from api.instance_checks import load_instance
from api.state import services
from cellar import parameters

blueprint = Blueprint("live_configuration", __name__)


@blueprint.get(f"{BASE}/configuration")
def current(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    names = sorted(parameters.rules_for(instance.datastore, instance.datastore_version))
    values = live(instance, lambda agent: agent.get_configuration(names))
    return jsonify({"instance": {"configuration": dict(sorted(values.items()))}})
