"""Who may see a dashboard page: a logged-in session, and a matching CSRF token on every
form sent. A token the API no longer takes ends the session."""

from __future__ import annotations

import hmac

from flask import redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from api.dashboard.client import ApiFailure
from api.dashboard.views import blueprint

OPEN = {"dashboard.login_form", "dashboard.log_in", "dashboard.static"}


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
