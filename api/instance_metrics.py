"""``GET /instances/{id}/metrics``: the instance's engine counters over a recent window.

Samples are taken by beat every ``cellar.metrics.EVERY`` seconds and kept a day; the
query's ``minutes`` (1 to 1440, default 60) picks the window, or ``since`` (an ISO time,
for polling: only newer samples come back). Counters come back as rates per second.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from api import body
from api.instance_checks import load_instance
from api.state import services
from cellar import metrics
from cellar.errors import InvalidInput
from cellar.models import utcnow

blueprint = Blueprint("instance_metrics", __name__)


def _since() -> dt.datetime:
    given = request.args.get("since")
    if given is None:
        minutes = body.integer(request.args.get("minutes", 60), "minutes", 1, metrics.MAX_MINUTES)
        return utcnow() - dt.timedelta(minutes=minutes)
    try:
        moment = dt.datetime.fromisoformat(given.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"since must be an ISO 8601 time such as 2026-12-04T10:00:00Z, not {given!r}"
        ) from exc
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return max(moment, utcnow() - metrics.KEEP)


@blueprint.get("/v1.0/<project_id>/instances/<instance_id>/metrics")
def instance_metrics(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        since = _since()
        samples = metrics.series(session, instance.id, since)
    return jsonify(
        {
            "metrics": {
                "instance_id": instance_id,
                "datastore": instance.datastore,
                "interval_seconds": metrics.EVERY,
                "since": since.isoformat(timespec="seconds") + "Z",
                "samples": samples,
            }
        }
    )
