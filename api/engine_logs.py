"""/instances/{id}/log: the engine's logs, listed and tailed live by the guest agent."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from api import body
from api.databases import live
from api.instance_checks import load_instance
from api.state import services
from cellar.errors import NotFound

blueprint = Blueprint("logs", __name__)

BASE = "/v1.0/<project_id>/instances/<instance_id>/log"
MAX_LINES = 5000


@blueprint.get(BASE)
def list_logs(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    found = live(instance, lambda agent: agent.list_logs())
    return jsonify(
        {
            "logs": [
                {
                    "name": log["name"],
                    "type": "SYS",
                    "status": "Ready" if log["size"] else "Ready-empty",
                    "size": log["size"],
                    "published": 0,
                    "pending": log["size"],
                    "container": None,
                    "prefix": None,
                    "metafile": None,
                }
                for log in found
            ]
        }
    )


@blueprint.get(f"{BASE}/<name>")
def tail_log(project_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    lines = body.integer(request.args.get("lines", 100), "lines", 1, MAX_LINES)
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
    known = [log["name"] for log in live(instance, lambda agent: agent.list_logs())]
    if name not in known:
        raise NotFound(f"instance {instance_id} has no log {name!r}; logs: {', '.join(known)}")
    found = live(instance, lambda agent: agent.tail_log(name, lines))
    return jsonify({"log": {"name": name, "lines": found}})
