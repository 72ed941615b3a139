"""``GET /instances/{id}/ssl``: what a client needs to check an instance's certificate.

Every engine port serves TLS with a certificate from Cellar's CA naming the instance's
host names and addresses; this route gives the CA's certificate (PEM) to verify it with
(``psql "sslmode=verify-full sslrootcert=ca.pem"``, ``mysql --ssl-verify-server-cert``,
``redis-cli --tls --cacert ca.pem``) and says whether plaintext connections are refused.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.instance_checks import load_instance
from api.state import services
from api.views import tls_view
from cellar import pki
from cellar.errors import InvalidInput, Unavailable

blueprint = Blueprint("instance_tls", __name__)

BASE = "/v1.0/<project_id>/instances/<instance_id>"


@functools.lru_cache(maxsize=4)
def _ca_pem(path: Path) -> str:
    return path.read_text()


def ca_certificate() -> str:
    """Cellar's CA certificate, PEM."""
    try:
        return _ca_pem(pki.ca_path(services().settings.home))
    except OSError as exc:
        raise Unavailable("Cellar's CA certificate cannot be read; try again later") from exc


@blueprint.get(f"{BASE}/ssl")
def show_ssl(project_id: str, instance_id: str) -> ResponseReturnValue:
    with services().db.session() as session:
        instance = load_instance(session, project_id, instance_id)
        view = tls_view(instance)
    return jsonify({"ssl": {"ca_certificate": ca_certificate(), **view}})


def requested(data: dict[str, object]) -> bool:
    """Whether a create or update body's ``"tls": {"required": bool}`` requires TLS."""
    tls = data.get("tls")
    if not isinstance(tls, dict) or set(tls) - {"required"}:
        raise InvalidInput('tls must be an object like {"required": true}')
    required = tls.get("required", False)
    if not isinstance(required, bool):
        raise InvalidInput("tls.required must be true or false")
    return required
