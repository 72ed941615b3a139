"""Writing a stream on a second thread, so receiving the next piece overlaps storing this one.

Use :func:`write_behind` where bytes arrive from the network and go to storage: both sides
spend most of their time outside the GIL (gRPC's receive, SHA-256, file writes), so two
threads move a backup faster than one. At most ``depth`` pieces wait between them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

DEPTH = 2


def write_behind(
    pieces: Iterable[bytes], write: Callable[[bytes], object], depth: int = DEPTH
) -> None:
    """Call ``write`` on every piece of ``pieces`` on another thread, in order.

    Returns once every piece is written; the first error of either side is raised here,
    and the other side stops.
    """
    waiting: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)  # None: no more
    failure: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        while True:
            item = waiting.get()
            if item is None or stop.is_set():
                return
            try:
                write(item)
            except BaseException as exc:  # noqa: BLE001  (handed to the reading thread, raised there)
                failure.append(exc)
                stop.set()
                return

    thread = threading.Thread(target=writer, name="write-behind", daemon=True)
    thread.start()
    try:
        for piece in pieces:
            while not stop.is_set():
                try:
                    waiting.put(piece, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
    except BaseException:
        stop.set()
        raise
    finally:
        _finish(waiting, stop)
        thread.join()
    if failure:
        raise failure[0]


def _finish(waiting: queue.Queue[bytes | None], stop: threading.Event) -> None:
    """Tell the writer there is no more (making room if it stopped early)."""
    while True:
        try:
            waiting.put(None, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                try:
                    waiting.get_nowait()
                except queue.Empty:
                    pass
