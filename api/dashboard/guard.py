"""Who may see a dashboard page: a logged-in session, and a matching CSRF token on every
form sent. A token the API no longer takes ends the session."""

from __future__ import annotations

import hmac

from flask import Response, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure
from api.dashboard.views import blueprint

OPEN = {"dashboard.login_form", "dashboard.log_in", "dashboard.static"}
# pages load only this Cellar's own scripts and styles, and no other site may frame them
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


@blueprint.before_request
def _check() -> ResponseReturnValue | None:
    if request.endpoint in OPEN:
        return None
    if "token" not in session:
        return redirect(url_for("dashboard.login_form", next=request.path))
    if request.method == "POST":
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            return "the form is stale or came from another site: reload the page", 400
    return None


@blueprint.errorhandler(ApiFailure)
def _expired(exc: ApiFailure) -> ResponseReturnValue:
    """An API failure no page handled: a token refused means logging in again."""
    if exc.status == 401:
        session.clear()
        return redirect(url_for("dashboard.login_form", next=request.path))
    return f"{exc.message} (HTTP {exc.status})", exc.status


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"  # pages hold project data
    return response
