"""The pages of a team's instances: the list, the create form, one instance and its
actions (users, databases, backups, replicas, delete)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from api.dashboard import charts, connect, debug_access, timeline
from api.dashboard.client import ApiFailure, call
from api.dashboard.views import blueprint, page


def _or_empty(method: str, path: str, key: str) -> list[dict[str, Any]]:
    """A list the page can go without (the agent busy, the instance still building)."""
    try:
        return list(call(method, path)[key])
    except ApiFailure:
        return []


@blueprint.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("dashboard.instances"))


@blueprint.get("/instances")
def instances() -> ResponseReturnValue:
    rows = call("GET", "/instances")["instances"]
    return page("instances.html", "cellar instance list", instances=rows)


@blueprint.get("/instances/rows")
def instance_rows() -> ResponseReturnValue:
    rows = call("GET", "/instances")["instances"]
    return page("_instance_rows.html", "", instances=rows)


def _choices() -> dict[str, Any]:
    datastores = call("GET", "/datastores")["datastores"]
    versions = [
        (d["name"], v["name"])
        for d in datastores
        for v in d.get("versions", [])
        if v.get("active", 1)
    ]
    backups = [b for b in call("GET", "/backups")["backups"] if b["status"] == "COMPLETED"]
    sources = [
        i for i in call("GET", "/instances")["instances"]
        if i["status"] == "ACTIVE" and "replica_of" not in i
    ]  # fmt: skip
    return {
        "versions": versions,
        "flavors": call("GET", "/flavors")["flavors"],
        "configurations": call("GET", "/configurations")["configurations"],
        "backups": backups,
        "sources": sources,
        "window": _window(backups),
    }


def _window(backups: list[dict[str, Any]]) -> dict[str, str] | None:
    """The recovery window of the chosen backup's instance, when it still has one."""
    chosen = request.values.get("backup", "")
    found = next((b for b in backups if b["id"] == chosen), None)
    if found is None or not found.get("instance_id"):
        return None
    try:
        view = call("GET", f"/instances/{found['instance_id']}")["instance"]
    except ApiFailure:
        return None
    window: dict[str, str] | None = view.get("recovery_window")
    return window


def _create_body(form: Any) -> dict[str, Any]:
    if form.get("replica_of"):  # replicas of a running instance: its datastore and data
        return {
            "name": form.get("name", "").strip(),
            "flavorRef": form.get("flavor", "2"),
            "replica_of": form["replica_of"],
            "replica_count": int(form.get("replica_count") or 1),
        }
    datastore, _sep, version = form.get("datastore", "postgresql/15").partition("/")
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "flavorRef": form.get("flavor", "2"),
        "volume": {"size": int(form.get("volume") or 1)},
        "datastore": {"type": datastore, "version": version},
    }
    databases = [n.strip() for n in form.get("databases", "").split(",") if n.strip()]
    if databases and datastore != "redis":
        body["databases"] = [{"name": n} for n in databases]
    if form.get("user_name", "").strip():
        user: dict[str, Any] = {
            "name": form["user_name"].strip(),
            "password": form.get("user_password", ""),
        }
        if databases and datastore != "redis":
            user["databases"] = [{"name": n} for n in databases]
        body["users"] = [user]
    if form.get("configuration"):
        body["configuration"] = form["configuration"]
    if form.get("backup"):
        point: dict[str, Any] = {"backupRef": form["backup"]}
        if form.get("restore_time"):
            point["restore_time"] = form["restore_time"].strip()
        body["restorePoint"] = point
    return body


def create_command(body: dict[str, Any]) -> str:
    if "replica_of" in body:
        return (f"cellar replica create {body['replica_of']} {body.get('name') or '<name>'}"
                f" --count {body['replica_count']}")  # fmt: skip
    parts = ["cellar instance create", body.get("name") or "<name>"]
    parts += [f"--flavor {body.get('flavorRef', '2')}", f"--size {body['volume']['size']}"]
    parts.append(f"--datastore {body['datastore']['type']}")
    parts += [f"--database {d['name']}" for d in body.get("databases", [])]
    parts += [f"--user {u['name']}" for u in body.get("users", [])]
    if "restorePoint" in body:
        parts.append(f"--restore {body['restorePoint']['backupRef']}")
    return " ".join(parts) + " --wait"


@blueprint.get("/instances/new")
def new_instance() -> ResponseReturnValue:
    return page(
        "create.html", "cellar instance create <name> --datastore postgresql --wait",
        error=None, form=request.args, **_choices(),
    )  # fmt: skip


@blueprint.post("/instances/new")
def create_instance() -> ResponseReturnValue:
    try:
        body = _create_body(request.form)
    except ValueError:
        body, error = None, "the volume size and the replica count must be whole numbers"
    if body is not None:
        try:
            made = call("POST", "/instances", {"instance": body})["instance"]
        except ApiFailure as exc:
            error = exc.message
        else:
            flash(f"instance {made['name']} is being built", "ok")
            return redirect(url_for("dashboard.instance", instance_id=made["id"]))
    command = create_command(body) if body else "cellar instance create <name> --wait"
    shown = page("create.html", command, error=error, form=request.form, **_choices())
    return shown, 400


@blueprint.get("/instances/<instance_id>")
def instance(instance_id: str) -> ResponseReturnValue:
    view = call("GET", f"/instances/{instance_id}")["instance"]
    active = view["status"] == "ACTIVE"
    users = _or_empty("GET", f"/instances/{instance_id}/users", "users") if active else []
    databases = (
        _or_empty("GET", f"/instances/{instance_id}/databases", "databases")
        if active and view["datastore"]["type"] != "redis"
        else []
    )
    logs = _or_empty("GET", f"/instances/{instance_id}/log", "logs") if active else []
    tail: list[str] = []
    if logs:
        try:
            tail = call("GET", f"/instances/{instance_id}/log/{logs[0]['name']}?lines=30")["log"][
                "lines"
            ]
        except ApiFailure:
            tail = []
    backups = call("GET", f"/backups?instance_id={instance_id}")["backups"]
    return page(
        "instance.html", f"cellar instance show {instance_id}",
        view=view, users=users, databases=databases, backups=backups, logs=logs, tail=tail,
        strings=_strings(view, users, databases), events=timeline.events(instance_id),
        debug_logins=debug_access.logins(instance_id) if active else [],
    )  # fmt: skip


def _strings(
    view: dict[str, Any], users: list[dict[str, Any]], databases: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    first_user = users[0]["name"] if users else "<user>"
    return connect.strings(view, first_user, databases[0]["name"] if databases else "")


@blueprint.get("/instances/<instance_id>/connect")
def instance_connect(instance_id: str) -> ResponseReturnValue:
    """The connection strings, asked for again while the instance builds."""
    view = call("GET", f"/instances/{instance_id}")["instance"]
    users, databases = [], []
    if view["status"] == "ACTIVE":
        users = _or_empty("GET", f"/instances/{instance_id}/users", "users")
        if view["datastore"]["type"] != "redis":
            databases = _or_empty("GET", f"/instances/{instance_id}/databases", "databases")
    return page("_connect.html", "", view=view, strings=_strings(view, users, databases))


@blueprint.get("/instances/<instance_id>/status")
def instance_status(instance_id: str) -> ResponseReturnValue:
    view = call("GET", f"/instances/{instance_id}")["instance"]
    return page("_status.html", "", view=view)


@blueprint.get("/instances/<instance_id>/chart")
def instance_chart(instance_id: str) -> ResponseReturnValue:
    samples = call("GET", f"/instances/{instance_id}/metrics?minutes=60")["metrics"]["samples"]
    return page("_chart.html", "", charts=charts.charts(samples))


def _act(instance_id: str, method: str, path: str, body: Any, done: str) -> ResponseReturnValue:
    try:
        call(method, path, body)
        flash(done, "ok")
    except ApiFailure as exc:
        flash(exc.message, "error")
    return redirect(url_for("dashboard.instance", instance_id=instance_id))


@blueprint.post("/instances/<instance_id>/users")
def add_user(instance_id: str) -> ResponseReturnValue:
    form = request.form
    user: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "password": form.get("password", ""),
    }
    databases = [n.strip() for n in form.get("databases", "").split(",") if n.strip()]
    if databases:
        user["databases"] = [{"name": n} for n in databases]
    return _act(instance_id, "POST", f"/instances/{instance_id}/users", {"users": [user]},
                f"adding user {user['name']}")  # fmt: skip


@blueprint.post("/instances/<instance_id>/databases")
def add_database(instance_id: str) -> ResponseReturnValue:
    name = request.form.get("name", "").strip()
    return _act(instance_id, "POST", f"/instances/{instance_id}/databases",
                {"databases": [{"name": name}]}, f"adding database {name}")  # fmt: skip


@blueprint.post("/instances/<instance_id>/backups")
def take_backup(instance_id: str) -> ResponseReturnValue:
    name = request.form.get("name", "").strip() or "dashboard"
    backup = {"backup": {"name": name, "instance": instance_id}}
    return _act(instance_id, "POST", "/backups", backup, f"taking backup {name}")


@blueprint.post("/instances/<instance_id>/replicas")
def add_replica(instance_id: str) -> ResponseReturnValue:
    name = request.form.get("name", "").strip()
    body = {"instance": {"name": name, "replica_of": instance_id, "replica_count": 1}}
    return _act(instance_id, "POST", "/instances", body, f"adding replica {name}")


CONFIRM: dict[str, tuple[str, str, str, Any, str]] = {
    "delete": ("Delete instance", "DELETE", "", None, "cellar instance delete {id}"),
    "promote": ("Make this replica the primary (switchover)", "POST", "/action",
                {"promote_to_replica_source": {}}, "cellar replica promote {id}"),
}  # fmt: skip


@blueprint.get("/instances/<instance_id>/<action>")
def confirm(instance_id: str, action: str) -> ResponseReturnValue:
    if action not in CONFIRM:
        return "no such page", 404
    view = call("GET", f"/instances/{instance_id}")["instance"]
    title, _method, _path, _body, command = CONFIRM[action]
    return page("confirm.html", command.format(id=instance_id), title=title, view=view,
                action=action)  # fmt: skip


@blueprint.post("/instances/<instance_id>/<action>")
def confirmed(instance_id: str, action: str) -> ResponseReturnValue:
    if action not in CONFIRM:
        return "no such page", 404
    title, method, path, body, _command = CONFIRM[action]
    try:
        call(method, f"/instances/{instance_id}{path}", body)
    except ApiFailure as exc:
        flash(exc.message, "error")
        return redirect(url_for("dashboard.instance", instance_id=instance_id))
    flash(f"{title.lower()}: started", "ok")
    if action == "delete":
        return redirect(url_for("dashboard.instances"))
    return redirect(url_for("dashboard.instance", instance_id=instance_id))
