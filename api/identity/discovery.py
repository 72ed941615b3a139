"""The identity API's version documents, which keystoneauth reads to find v3."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

blueprint = Blueprint("identity_discovery", __name__)

MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _version() -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": request.host_url.rstrip("/") + "/identity/v3/"}],
        "media-types": MEDIA,
    }


@blueprint.get("/identity")
@blueprint.get("/identity/")
def versions() -> ResponseReturnValue:
    return jsonify({"versions": {"values": [_version()]}}), 300


@blueprint.get("/identity/v3")
@blueprint.get("/identity/v3/")
def version() -> ResponseReturnValue:
    return jsonify({"version": _version()})
