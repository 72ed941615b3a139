"""What happens around every RPC: request id, one log line, errors to gRPC statuses.

:class:`CallInterceptor` wraps each handler (unary, or streaming backups and restores) so
that the wrapper runs on the worker thread that serves the call: ``x-request-id`` from
the metadata is bound for every log line of the call, the outcome and duration are
logged (never the request, which may hold a password), and engine errors become the
status codes of :func:`status_for`. Successful status and metrics polls are logged at
DEBUG only; failures always at WARNING or above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from cellar.errors import CellarError, InvalidInput
from cellar.logs import bound_request_id
from guestagent.errors import EngineDown, NotPrepared, Unsupported

logger = logging.getLogger(__name__)

QUIET_SERVICES = ("grpc.health.v1.Health",)
QUIET_METHODS = ("GetStatus", "GetMetrics")  # polled by the HEALTHCHECK and the control plane
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
    """Who may call, request id, logging and error mapping for every RPC of the server.

    ``authorize(context, service, method)`` says whether the caller may call it; one who
    may not gets PERMISSION_DENIED before anything runs."""

    def __init__(self, authorize: Callable[[Any, str, str], bool] | None = None) -> None:
        self.authorize = authorize

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        service, _, method = str(details.method).lstrip("/").rpartition("/")
        authorize = self.authorize

        def check(context: Any) -> None:
            if authorize is not None and not authorize(context, service, method):
                logger.warning("refused %s/%s to %s", service, method, context.peer())
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{service} is not yours to call")

        quiet = service in QUIET_SERVICES or method in QUIET_METHODS
        level = logging.DEBUG if quiet else logging.INFO
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None or handler.stream_unary is not None:
            behavior = handler.unary_unary or handler.stream_unary

            def observed(request: Any, context: Any) -> Any:
                check(context)
                with bound_request_id(_request_id(context)):
                    return _observe(behavior, request, context, method, level)

            if handler.unary_unary is not None:
                return grpc.unary_unary_rpc_method_handler(observed, **codec)
            return grpc.stream_unary_rpc_method_handler(observed, **codec)
        if handler.unary_stream is not None:
            streaming = handler.unary_stream

            def streamed(request: Any, context: Any) -> Iterator[Any]:
                check(context)
                with bound_request_id(_request_id(context)):
                    yield from _observe_stream(streaming, request, context, method)

            return grpc.unary_stream_rpc_method_handler(streamed, **codec)
        if handler.stream_stream is not None:  # no such RPC today: refuse all but the allowed
            duplex = handler.stream_stream

            def both(requests: Any, context: Any) -> Iterator[Any]:
                check(context)
                yield from duplex(requests, context)

            return grpc.stream_stream_rpc_method_handler(both, **codec)
        return handler


def _observe(
    behavior: Callable[..., Any], request: Any, context: Any, method: str, level: int
) -> Any:
    started = time.monotonic()
    try:
        reply = behavior(request, context)
    except Exception as exc:  # noqa: BLE001  (_abort logs it and always raises)
        _abort(exc, context, method, started)
    outcome = context.code() or grpc.StatusCode.OK
    logger.log(level, "%s %s in %.1f ms", method, outcome.name, _ms(started))
    return reply


def _observe_stream(
    behavior: Callable[..., Iterator[Any]], request: Any, context: Any, method: str
) -> Iterator[Any]:
    """Like :func:`_observe` for a streamed reply: errors while streaming are mapped too."""
    started = time.monotonic()
    sent = 0
    try:
        for message in behavior(request, context):
            sent += 1
            yield message
    except Exception as exc:  # noqa: BLE001  (_abort logs it and always raises)
        _abort(exc, context, method, started)
    logger.info("%s OK in %.1f ms (%d messages)", method, _ms(started), sent)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _abort(exc: Exception, context: Any, method: str, started: float) -> None:
    """Log ``exc`` and end the call with its status (``context.abort`` raises)."""
    if isinstance(exc, CellarError):
        code, message = status_for(exc)
        logger.warning("%s failed with %s in %.1f ms: %s", method, code.name, _ms(started), message)
        context.abort(code, message)
    aborted = context.code()
    if aborted is not None and aborted != grpc.StatusCode.OK:
        logger.warning("%s aborted with %s in %.1f ms", method, aborted.name, _ms(started))
        raise exc
    code, message = status_for(exc)
    logger.exception("%s failed with %s in %.1f ms", method, code.name, _ms(started))
    context.abort(code, message)
