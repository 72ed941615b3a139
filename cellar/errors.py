"""Cellar's exception tree, shared by the API, the task manager and the CLI.

    CellarError
    ├── InvalidInput        bad request body or name (HTTP 400)
    ├── Unauthorized        no token, or one that is not valid (HTTP 401)
    ├── Forbidden           a valid token that may not do this (HTTP 403)
    ├── NotFound            unknown id or name (HTTP 404)
    ├── Conflict            the name or resource is already taken (HTTP 409)
    ├── Busy                the instance is still working on a task (HTTP 422)
    ├── Unprocessable       well formed, but not to be done as sent (HTTP 422)
    ├── OverLimit           over the project's quota (HTTP 413)
    ├── UnsupportedMedia    a body that is not JSON (HTTP 415)
    ├── Unavailable         a live read could not reach the instance (HTTP 503)
    ├── ComputeError        the Docker engine failed or refused (task manager)
    └── AgentError          the guest agent failed (task manager)
        └── AgentTimeout    the guest agent did not answer within the deadline

Errors raised by third-party libraries are translated at the edge that calls
them, with ``raise ... from exc``.
"""

from __future__ import annotations


class CellarError(Exception):
    """Base of every error that Cellar raises on purpose."""

    http_status = 500
    trove_name = "instanceFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CellarError):
    http_status = 400
    trove_name = "badRequest"


class Unauthorized(CellarError):
    http_status = 401
    trove_name = "unauthorized"


class Forbidden(CellarError):
    http_status = 403
    trove_name = "forbidden"


class OverLimit(CellarError):
    """A create would take the project past its quota."""

    http_status = 413
    trove_name = "overLimit"


class UnsupportedMedia(CellarError):
    http_status = 415
    trove_name = "badMediaType"


class NotFound(CellarError):
    http_status = 404
    trove_name = "itemNotFound"


class Conflict(CellarError):
    http_status = 409
    trove_name = "conflictingRequest"


class Busy(CellarError):
    http_status = 422
    trove_name = "unprocessableEntity"


class Unprocessable(CellarError):
    http_status = 422
    trove_name = "unprocessableEntity"


class ComputeError(CellarError):
    """The Docker engine failed or refused what was asked."""


class AgentError(CellarError):
    """The guest agent answered with an error."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class AgentTimeout(AgentError):
    """The guest agent did not answer within the deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class Unavailable(CellarError):
    """A live read could not reach the instance (HTTP 503)."""

    http_status = 503
    trove_name = "serviceUnavailable"
