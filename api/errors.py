"""Every error leaves the API in Trove's shape: ``{"badRequest": {"code": 400, ...}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from cellar.errors import CellarError

logger = logging.getLogger(__name__)

HTTP_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    422: "unprocessableEntity",
    500: "instanceFault",
    503: "serviceUnavailable",
}


def error_response(code: int, message: str) -> tuple[Response, int]:
    """Trove's error shape, or Keystone's on the identity API's routes."""
    if request.path.startswith("/identity"):
        title = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        body: dict[str, object] = {"error": {"code": code, "title": title, "message": message}}
    else:
        name = HTTP_NAMES.get(code, "computeFault")
        body = {name: {"code": code, "message": message, "request_id": g.get("request_id", "-")}}
    response = jsonify(body)
    if code == 401:
        from api import auth

        where = auth.current().settings.identity_url
        response.headers["WWW-Authenticate"] = f'Keystone uri="{where}"'
    return response, code


def install(app: Flask) -> None:
    @app.errorhandler(CellarError)
    def _cellar(exc: CellarError) -> tuple[Response, int]:
        if exc.http_status >= 500:
            logger.error("request failed: %s", exc.message)
        return error_response(exc.http_status, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        messages = {
            404: "the resource could not be found; check the URL",
            405: "this method is not allowed on this resource",
            413: f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
        }
        return error_response(code, messages.get(code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        logger.exception("unexpected error")
        return error_response(500, "internal error; quote the request id when reporting it")
