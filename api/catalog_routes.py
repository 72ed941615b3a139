"""Read-only catalog: API versions, the health check, flavors and datastores."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.state import services
from cellar import catalog, parameters
from cellar.errors import NotFound

logger = logging.getLogger(__name__)
blueprint = Blueprint("catalog", __name__)


def link(path: str) -> list[dict[str, str]]:
    href = request.host_url.rstrip("/") + path
    return [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}]


def version_entry() -> dict[str, Any]:
    return {
        "id": "v1.0",
        "status": "CURRENT",
        "updated": "2012-08-01T00:00:00Z",
        "links": [{"href": request.host_url.rstrip("/") + "/v1.0/", "rel": "self"}],
    }


@blueprint.get("/")
def versions() -> ResponseReturnValue:
    return jsonify({"versions": [version_entry()]})


@blueprint.get("/v1.0/")
def version() -> ResponseReturnValue:
    """The one version's document, for clients that discover from the versioned URL."""
    return jsonify({"version": version_entry()})


@blueprint.get("/healthcheck")
def healthcheck() -> ResponseReturnValue:
    """200 ``OK`` while the metadata database answers (HEAD: 204), else 503 and why."""
    try:
        with services().db.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        logger.warning("health check: the metadata database does not answer: %s", exc)
        return Response("the metadata database does not answer\n", 503, mimetype="text/plain")
    if request.method == "HEAD":
        return Response(status=204)
    return Response("OK\n", 200, mimetype="text/plain")


def flavor_view(project_id: str, flavor: catalog.Flavor) -> dict[str, Any]:
    return {
        "id": int(flavor.id),
        "str_id": flavor.id,
        "name": flavor.name,
        "ram": flavor.ram_mb,
        "vcpus": flavor.vcpus,
        "disk": None,
        "links": link(f"/v1.0/{project_id}/flavors/{flavor.id}"),
    }


@blueprint.get("/v1.0/<project_id>/flavors")
def list_flavors(project_id: str) -> ResponseReturnValue:
    return jsonify({"flavors": [flavor_view(project_id, f) for f in catalog.FLAVORS.values()]})


@blueprint.get("/v1.0/<project_id>/flavors/<flavor_id>")
def show_flavor(project_id: str, flavor_id: str) -> ResponseReturnValue:
    flavor = catalog.FLAVORS.get(flavor_id)
    if flavor is None:
        raise NotFound(
            f"flavor {flavor_id} does not exist; flavors are {', '.join(catalog.FLAVORS)}"
        )
    return jsonify({"flavor": flavor_view(project_id, flavor)})


def version_view(project_id: str, version: catalog.DatastoreVersion) -> dict[str, Any]:
    datastore = catalog.DATASTORES[version.datastore]
    return {
        "id": version.id,
        "name": version.name,
        "datastore": datastore.id,
        "datastore_name": datastore.name,
        "active": 1,
        "packages": "",
        "image": f"{version.image}:{version.name}",
        "version": version.name,
        "links": link(f"/v1.0/{project_id}/datastores/versions/{version.id}"),
    }


def datastore_view(project_id: str, datastore: catalog.Datastore) -> dict[str, Any]:
    return {
        "id": datastore.id,
        "name": datastore.name,
        "default_version": datastore.default_version.id,
        "versions": [version_view(project_id, v) for v in datastore.versions],
        "links": link(f"/v1.0/{project_id}/datastores/{datastore.id}"),
    }


def find(name_or_id: str) -> catalog.Datastore:
    datastore = catalog.find_datastore(name_or_id)
    if datastore is None:
        allowed = ", ".join(catalog.DATASTORES)
        raise NotFound(f"datastore {name_or_id!r} does not exist; datastores are {allowed}")
    return datastore


@blueprint.get("/v1.0/<project_id>/datastores")
def list_datastores(project_id: str) -> ResponseReturnValue:
    views = [datastore_view(project_id, d) for d in catalog.DATASTORES.values()]
    return jsonify({"datastores": views})


@blueprint.get("/v1.0/<project_id>/datastores/<datastore>")
def show_datastore(project_id: str, datastore: str) -> ResponseReturnValue:
    return jsonify({"datastore": datastore_view(project_id, find(datastore))})


@blueprint.get("/v1.0/<project_id>/datastores/<datastore>/versions")
def list_versions(project_id: str, datastore: str) -> ResponseReturnValue:
    found = find(datastore)
    return jsonify({"versions": [version_view(project_id, v) for v in found.versions]})


@blueprint.get("/v1.0/<project_id>/datastores/<datastore>/versions/<version>")
def show_version(project_id: str, datastore: str, version: str) -> ResponseReturnValue:
    found = find(datastore).version(version)
    if found is None:
        raise NotFound(f"datastore {datastore!r} has no version {version!r}")
    return jsonify({"version": version_view(project_id, found)})


def _version_by_id(version_id: str) -> catalog.DatastoreVersion:
    for datastore in catalog.DATASTORES.values():
        found = datastore.version(version_id)
        if found is not None:
            return found
    raise NotFound(f"datastore version {version_id!r} does not exist")


@blueprint.get("/v1.0/<project_id>/datastores/versions/<version_id>")
def show_version_by_id(project_id: str, version_id: str) -> ResponseReturnValue:
    return jsonify({"version": version_view(project_id, _version_by_id(version_id))})


def parameter_view(version: catalog.DatastoreVersion, rule: parameters.Rule) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": rule.name,
        "type": rule.type,
        "restart_required": not rule.dynamic,
        "dynamic": rule.dynamic,
        "datastore_version_id": version.id,
    }
    if rule.min is not None:
        view["min"] = rule.min
    if rule.max is not None:
        view["max"] = rule.max
    if rule.choices:
        view["choices"] = list(rule.choices)
    return view


def _version_of(datastore: str, version: str) -> catalog.DatastoreVersion:
    found = find(datastore).version(version)
    if found is None:
        raise NotFound(f"datastore {datastore!r} has no version {version!r}")
    return found


def _parameters(found: catalog.DatastoreVersion) -> ResponseReturnValue:
    rules = parameters.rules_for(found.datastore, found.name)
    views = [parameter_view(found, rule) for _, rule in sorted(rules.items())]
    return jsonify({"configuration-parameters": views})


def _parameter(found: catalog.DatastoreVersion, name: str) -> ResponseReturnValue:
    rule = parameters.rules_for(found.datastore, found.name).get(name)
    if rule is None:
        raise NotFound(f"{found.datastore} {found.name} has no parameter {name!r} that Cellar sets")
    return jsonify(parameter_view(found, rule))


@blueprint.get("/v1.0/<project_id>/datastores/<datastore>/versions/<version>/parameters")
def list_parameters(project_id: str, datastore: str, version: str) -> ResponseReturnValue:
    return _parameters(_version_of(datastore, version))


@blueprint.get("/v1.0/<project_id>/datastores/<datastore>/versions/<version>/parameters/<name>")
def show_parameter(project_id: str, datastore: str, version: str, name: str) -> ResponseReturnValue:
    return _parameter(_version_of(datastore, version), name)


@blueprint.get("/v1.0/<project_id>/datastores/versions/<version_id>/parameters")
def list_parameters_by_id(project_id: str, version_id: str) -> ResponseReturnValue:
    """The stock client's form: the version named by its id alone."""
    return _parameters(_version_by_id(version_id))


@blueprint.get("/v1.0/<project_id>/datastores/versions/<version_id>/parameters/<name>")
def show_parameter_by_id(project_id: str, version_id: str, name: str) -> ResponseReturnValue:
    return _parameter(_version_by_id(version_id), name)
