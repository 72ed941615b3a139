"""The operators' page (admin role on the admin project): every project's instances with
filters, their quotas, failed and stuck tasks, the last day's failovers and the host's
capacity."""

from __future__ import annotations

from typing import Any

from flask import abort, request
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure, call
from api.dashboard.views import blueprint, is_admin, page

FILTERS = ("project_id", "status", "datastore")


def _matches(view: dict[str, Any], wanted: dict[str, str]) -> bool:
    found = {
        "project_id": view.get("project_id", ""),
        "status": view.get("status", ""),
        "datastore": view.get("datastore", {}).get("type", ""),
    }
    return all(found[k] == v for k, v in wanted.items() if v)


@blueprint.get("/admin")
def operators() -> ResponseReturnValue:
    if not is_admin():
        abort(403)
    wanted = {k: request.args.get(k, "").strip() for k in FILTERS}
    every = call("GET", "/mgmt/instances?deleted=false")["instances"]
    shown = [v for v in every if _matches(v, wanted)]
    quotas = []
    for project in sorted({v["project_id"] for v in every}):
        try:
            quotas.append((project, call("GET", f"/mgmt/quotas/{project}")["quotas"]))
        except ApiFailure:
            continue
    return page(
        "admin.html", "cellar instance list --all-projects",
        instances=shown, wanted=wanted, quotas=quotas,
        failed=call("GET", "/mgmt/tasks?state=failed&hours=24")["tasks"],
        stuck=call("GET", "/mgmt/tasks?state=stuck")["tasks"],
        failovers=[
            e for e in call("GET", "/mgmt/replication_events?hours=24")["replication_events"]
            if e["kind"] != "switchover"
        ],
        capacity=call("GET", "/mgmt/capacity")["capacity"],
        statuses=sorted({v["status"] for v in every}),
        datastores=sorted({v["datastore"]["type"] for v in every}),
    )  # fmt: skip
