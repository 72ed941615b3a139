"""Moving a stream through two threads, so producing the next piece overlaps using this one.

Use :func:`read_ahead` where pieces come from one slow source and go to another: the
agent reads a backup tool's pipe on one thread while gRPC sends the last chunk on
another; the worker receives the next chunk while the last one is hashed and written
(:func:`write_behind`). Both sides spend most of their time outside the GIL (pipes,
sockets, SHA-256, file writes), so two threads move a backup faster than one. At most
``depth`` pieces wait between them, which bounds the memory a stream holds.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")
DEPTH = 2
PUT_EVERY = 0.5  # seconds between looks at whether the consumer went away
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(source: Iterable[T], depth: int = DEPTH) -> Iterator[T]:
    """The items of ``source`` in order, produced on another thread up to ``depth`` ahead.

    An error of ``source`` is raised here, at its place in the stream. Closing this
    iterator early (or an error in the consumer) stops the producer after its current
    item and closes ``source`` on the producer's thread, which ends what it runs (a
    tool, a call). The producer runs in a copy of the caller's context (request id).
    """
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=PUT_EVERY)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        items = iter(source)
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = waiting.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        _drain(waiting)
        thread.join()


def _drain(waiting: queue.Queue[object]) -> None:
    """Drop what waits, so a producer blocked on a full queue sees the stop at once."""
    while True:
        try:
            waiting.get_nowait()
        except queue.Empty:
            return


def write_behind(
    pieces: Iterable[bytes], write: Callable[[bytes], object], depth: int = DEPTH
) -> None:
    """Call ``write`` on every piece of ``pieces``, in order, while the next ones arrive
    on another thread. The first error of either side is raised here; the other side stops.
    """
    for piece in read_ahead(pieces, depth):
        write(piece)
