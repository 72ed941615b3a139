"""``GET /metrics``: Cellar in Prometheus' text format, for admins and for Prometheus.

Two callers may read it: a token of an admin (the admin role on the admin project) in
``X-Auth-Token``, as on the other routes, or Prometheus with the scrape token as
``Authorization: Bearer <token>`` (``cellar.scrape_token``). No credential is a 401, a
token of someone else a 403. ``api.auth.check_request`` leaves this route to
:func:`check_scraper`, since the scrape token is no identity token.

A scrape shows the families read from the metadata database
(``cellar.metric_families``) and the API's own request latency,
``cellar_api_request_duration_seconds{method,route,status}``, observed after every
request with the route's rule (``/v1.0/<project_id>/instances``), never its path, so
the labels stay few. Under gunicorn each worker process observes its own requests:
with ``PROMETHEUS_MULTIPROC_DIR`` set (``cellar serve`` sets it), each writes them in
that folder and a scrape adds up every process's; without it (tests, one process) the
histogram lives in the process.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api import auth
from cellar.db import Database
from cellar.errors import Forbidden, Unauthorized
from cellar.metric_families import MetadataCollector
from cellar.scrape_token import scrape_token

logger = logging.getLogger(__name__)

blueprint = Blueprint("prometheus", __name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
UNMATCHED = "(unmatched)"  # the route of a request that matched none


@dataclasses.dataclass
class Exporter:
    """What one app shows at ``/metrics``; ``install`` keeps one in its extensions."""

    latency: Histogram
    metadata: MetadataCollector
    multiprocess_dir: str | None

    def registry(self) -> CollectorRegistry:
        """A registry for one scrape: every process's requests, and the metadata."""
        registry = CollectorRegistry()
        if self.multiprocess_dir:
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        else:
            registry.register(self.latency)
        registry.register(self.metadata)
        return registry


def install(app: Flask, db: Database) -> None:
    """Serve ``/metrics`` in ``app``; call :func:`observe` after each of its requests."""
    latency = Histogram(
        "cellar_api_request_duration_seconds",
        "Seconds the API took to answer, by method, route (its rule) and status.",
        ["method", "route", "status"],
        buckets=REQUEST_BUCKETS,
        registry=None,  # each scrape builds its own registry (Exporter.registry)
    )
    folder = os.environ.get(MULTIPROC_ENV, "").strip() or None
    if folder is not None:  # a gunicorn started without `cellar serve` may not have made it
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    app.extensions["cellar_prometheus"] = Exporter(latency, MetadataCollector(db), folder)
    app.register_blueprint(blueprint)


def observe(status: int, seconds: float) -> None:
    """Count the request being answered in the latency histogram."""
    exporter: Exporter = current_app.extensions["cellar_prometheus"]
    method = request.method if request.method in METHODS else "OTHER"
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    exporter.latency.labels(method, route, str(status)).observe(seconds)


def check_scraper(checks: auth.Auth) -> None:
    """Let an admin's token or the scrape token through; raise for anyone else.

    ``X-Auth-Token``, when given, decides: 401 if it is not valid, 403 if it is not an
    admin's. Otherwise ``Authorization: Bearer`` must hold the scrape token (compared in
    constant time), and no credential at all is a 401."""
    token = request.headers.get(auth.TOKEN_HEADER, "").strip()
    if token:
        g.identity = checks.validator.validate(token)
        if not checks.is_admin(g.identity):
            raise Forbidden(
                "/metrics needs the admin role on the admin project, "
                "or the scrape token as Authorization: Bearer"
            )
        return
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        expected = scrape_token(checks.settings)
        if hmac.compare_digest(given.strip().encode(), expected.encode()):
            return
        raise Unauthorized("the bearer token is not the scrape token of /metrics")
    raise Unauthorized(
        f"/metrics needs an admin's token in {auth.TOKEN_HEADER}, "
        "or the scrape token as Authorization: Bearer <token>"
    )


@blueprint.get("/metrics", provide_automatic_options=False)  # Prometheus only GETs it
def metrics() -> ResponseReturnValue:
    """Every family, read now, in Prometheus' text format."""
    check_scraper(auth.current())
    exporter: Exporter = current_app.extensions["cellar_prometheus"]
    return Response(generate_latest(exporter.registry()), content_type=TEXT_FORMAT)
