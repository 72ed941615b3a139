"""Structured (JSON lines) logging with the request id of the change being worked on.

Every part of Cellar (API, task manager, guest agent) logs through this module, so
one ``X-Request-ID`` can be followed end to end with a plain ``grep``. Celery beat's
"Sending due task" lines, one every second or so, are DEBUG records (``BeatChatter``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

BEAT_DUE_TASK = "Scheduler: Sending due task"  # how celery.beat starts its periodic line

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "request_id": request_id.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class BeatChatter(logging.Filter):
    """Lowers Celery beat's "Scheduler: Sending due task ..." records from INFO to DEBUG.

    ``setup()`` attaches it to the ``celery.beat`` logger; beat's other records, its
    warnings and errors among them, keep their level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and str(record.msg).startswith(BEAT_DUE_TASK):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_beat_chatter = BeatChatter()


def setup(service: str, level: int = logging.INFO) -> None:
    """Send this process's log records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("celery.beat").addFilter(_beat_chatter)


@contextlib.contextmanager
def bound_request_id(value: str | None) -> Iterator[None]:
    """Log everything inside the block under ``value``."""
    token = request_id.set(value or "-")
    try:
        yield
    finally:
        request_id.reset(token)
