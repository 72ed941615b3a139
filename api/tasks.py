"""/tasks (a Cellar resource): what a change is doing, step by step."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from api.instance_checks import load_instance
from api.state import services
from api.views import task_view
from cellar.errors import NotFound
from cellar.models import Task

blueprint = Blueprint("tasks", __name__)


@blueprint.get("/v1.0/<project_id>/tasks/<task_id>")
def show(project_id: str, task_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        task = session.get(Task, task_id)
        if task is None or task.project_id != project_id:
            raise NotFound(f"task {task_id} does not exist in project {project_id}")
        return jsonify({"task": task_view(task)})


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>/tasks")
def for_instance(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        load_instance(session, project_id, instance_id)
        rows = session.scalars(
            select(Task).where(Task.instance_id == instance_id).order_by(Task.created.desc())
        ).all()
        return jsonify({"tasks": [task_view(t) for t in rows]})
