"""What happens around every RPC: request id, one log line, errors to gRPC statuses.

:class:`CallInterceptor` wraps each unary handler so that the wrapper runs on the worker
thread that serves the call: ``x-request-id`` from the metadata is bound for every log
line of the call, the outcome and duration are logged (never the request, which may hold
a password), and engine errors become the status codes of :func:`status_for`. Successful
status polls are logged at DEBUG only; failures always at WARNING or above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from cellar.errors import CellarError, InvalidInput
from cellar.logs import bound_request_id
from guestagent.errors import EngineDown, NotPrepared, Unsupported

logger = logging.getLogger(__name__)

QUIET_SERVICES = ("grpc.health.v1.Health",)
QUIET_METHODS = ("GetStatus",)  # polled by the image's HEALTHCHECK and the task manager
MESSAGE_MAX = 300


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and the message to send back for ``exc``."""
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, exc.message
    if isinstance(exc, NotPrepared):
        return grpc.StatusCode.FAILED_PRECONDITION, exc.message
    if isinstance(exc, EngineDown):
        return grpc.StatusCode.UNAVAILABLE, exc.message
    if isinstance(exc, Unsupported):
        return grpc.StatusCode.UNIMPLEMENTED, exc.message
    if isinstance(exc, CellarError):
        return grpc.StatusCode.INTERNAL, exc.message[:MESSAGE_MAX]
    return grpc.StatusCode.INTERNAL, "internal error in the guest agent"


def _request_id(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "x-request-id" and isinstance(value, str):
            return value[:200]
    return None


class CallInterceptor(grpc.ServerInterceptor):
    """Request id, logging and error mapping for every unary RPC of the server."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, method = str(details.method).lstrip("/").rpartition("/")
        quiet = service in QUIET_SERVICES or method in QUIET_METHODS
        level = logging.DEBUG if quiet else logging.INFO
        behavior = handler.unary_unary

        def observed(request: Any, context: Any) -> Any:
            with bound_request_id(_request_id(context)):
                return _observe(behavior, request, context, method, level)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _observe(
    behavior: Callable[..., Any], request: Any, context: Any, method: str, level: int
) -> Any:
    started = time.monotonic()

    def elapsed() -> float:
        return (time.monotonic() - started) * 1000

    try:
        reply = behavior(request, context)
    except CellarError as exc:
        code, message = status_for(exc)
        logger.warning("%s failed with %s in %.1f ms: %s", method, code.name, elapsed(), message)
        context.abort(code, message)
    except Exception as exc:
        aborted = context.code()
        if aborted is not None and aborted != grpc.StatusCode.OK:
            logger.warning("%s aborted with %s in %.1f ms", method, aborted.name, elapsed())
            raise
        code, message = status_for(exc)
        logger.exception("%s failed with %s in %.1f ms", method, code.name, elapsed())
        context.abort(code, message)
    outcome = context.code() or grpc.StatusCode.OK
    logger.log(level, "%s %s in %.1f ms", method, outcome.name, elapsed())
    return reply
