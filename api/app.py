"""The Flask application factory.

Use ``create_app()`` in a WSGI server (``gunicorn 'api.app:main()'``); tests pass
their own services, with fakes for the queue and the agents.
"""

from __future__ import annotations

import gc
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from api import (
    audit,
    audit_routes,
    auth,
    backup_strategies,
    backups,
    catalog_routes,
    configurations,
    credentials,
    dashboard,
    databases,
    encoding,
    engine_logs,
    errors,
    identity,
    instance_metrics,
    instance_tls,
    instances,
    live_configuration,
    mgmt,
    mgmt_overview,
    openapi,
    pages,
    project_settings,
    prometheus,
    quotas,
    replication_events,
    root,
    state,
    tasks,
    user_access,
)
from cellar import logs
from cellar import settings as settings_module
from cellar.errors import InvalidInput
from cellar.identity.bootstrap import bootstrap

logger = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY = 1024 * 1024


def create_app(svc: state.Services | None = None, checks: auth.Auth | None = None) -> Flask:
    """The API; ``checks`` (who may do what) comes from the settings unless given."""
    if svc is None:
        svc = state.build(settings_module.load())
    app = Flask("cellar", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    encoding.install(app)
    app.extensions["cellar"] = svc
    app.extensions["cellar_pages"] = pages.Pages()
    app.extensions["cellar_auth"] = checks or auth.auth_for(svc.settings, svc.db)
    errors.install(app)

    @app.url_value_preprocessor
    def _check_project(_endpoint: str | None, values: dict[str, object] | None) -> None:
        project = (values or {}).get("project_id")
        if project is not None and not PROJECT_ID.fullmatch(str(project)):
            raise InvalidInput("project_id must be 1 to 64 letters, digits, underscores or hyphens")

    @app.before_request
    def _begin() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else f"req-{uuid.uuid4()}"
        g.started = time.monotonic()
        g.log_token = logs.request_id.set(g.request_id)
        auth.check_request(auth.current())

    @app.after_request
    def _finish(response: Response) -> Response:
        audit.after(response)
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        took = time.monotonic() - g.get("started", time.monotonic())
        prometheus.observe(response.status_code, took)
        logger.info(
            "%s %s -> %d in %.3f s", request.method, request.path, response.status_code, took
        )
        return response

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.request_id.reset(token)

    app.register_blueprint(catalog_routes.blueprint)
    app.register_blueprint(instances.blueprint)
    app.register_blueprint(databases.blueprint)
    app.register_blueprint(user_access.blueprint)
    app.register_blueprint(root.blueprint)
    app.register_blueprint(instance_tls.blueprint)
    app.register_blueprint(backups.blueprint)
    app.register_blueprint(backup_strategies.blueprint)
    app.register_blueprint(tasks.blueprint)
    app.register_blueprint(audit_routes.blueprint)
    app.register_blueprint(engine_logs.blueprint)
    app.register_blueprint(credentials.blueprint)
    app.register_blueprint(project_settings.blueprint)
    app.register_blueprint(instance_metrics.blueprint)
    app.register_blueprint(configurations.blueprint)
    app.register_blueprint(live_configuration.blueprint)
    app.register_blueprint(replication_events.blueprint)
    app.register_blueprint(quotas.blueprint)
    app.register_blueprint(mgmt.blueprint)
    app.register_blueprint(mgmt_overview.blueprint)
    app.register_blueprint(openapi.blueprint)
    dashboard.install(app, svc.settings)
    prometheus.install(app, svc.db)
    if svc.settings.own_identity:
        identity.install(app)
    return app


def main() -> Flask:
    """Entry point for gunicorn: JSON logs, settings from the environment."""
    logs.setup("api")
    settings = settings_module.load()
    svc = state.build(settings)
    if settings.own_identity:
        bootstrap(settings, svc.db)
    app = create_app(svc)
    # what exists now lives as long as the process: keep the collector from walking it
    # again and again, which costs a request that makes many objects tens of ms
    gc.collect()
    gc.freeze()
    return app
