from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from cellar.pipeline import read_ahead, write_behind


def test_every_piece_is_written_in_order() -> None:
    written: list[bytes] = []
    write_behind((bytes([i]) for i in range(200)), written.append, depth=3)
    assert written == [bytes([i]) for i in range(200)]


def test_a_failing_write_stops_the_reading_and_is_raised() -> None:
    read = 0

    def pieces() -> Iterator[bytes]:
        nonlocal read
        for i in range(1000):
            read += 1
            yield bytes([i % 256])

    def write(piece: bytes) -> None:
        if piece == b"\x05":
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_behind(pieces(), write, depth=2)
    assert read < 50  # the reader stopped soon after, not at the end of the stream


def test_a_failing_read_is_raised_and_the_writer_ends() -> None:
    def pieces() -> Iterator[bytes]:
        yield b"a"
        raise ConnectionError("agent went away")

    before = threading.active_count()
    with pytest.raises(ConnectionError, match="went away"):
        write_behind(pieces(), lambda piece: None)
    assert threading.active_count() == before


def test_no_more_than_depth_pieces_wait_for_a_slow_writer() -> None:
    ahead: list[int] = []
    produced = 0
    written = 0

    def pieces() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(30):
            produced += 1
            ahead.append(produced - written)
            yield b"x"

    def write(piece: bytes) -> None:
        nonlocal written
        time.sleep(0.002)
        written += 1

    write_behind(pieces(), write, depth=4)
    assert written == 30
    assert max(ahead) <= 4 + 2  # the queue, the piece being written, the one being read


# --- read_ahead -------------------------------------------------------------------------

request = contextvars.ContextVar("request", default="-")


def test_read_ahead_gives_every_item_in_order_then_the_sources_error() -> None:
    def source() -> Iterator[int]:
        yield from range(50)
        raise ValueError("tool exited 1")

    got: list[int] = []
    with pytest.raises(ValueError, match="exited 1"):
        for item in read_ahead(source(), depth=3):
            got.append(item)
    assert got == list(range(50))


def test_closing_read_ahead_early_closes_the_source_and_its_thread() -> None:
    closed = threading.Event()
    produced = 0

    def source() -> Iterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            closed.set()

    before = threading.active_count()
    items = read_ahead(source(), depth=2)
    assert [next(items) for _ in range(3)] == [1, 2, 3]
    items.close()  # type: ignore[attr-defined]
    assert closed.is_set()
    assert produced <= 3 + 2 + 1  # what was taken, the queue, the one in hand
    assert threading.active_count() == before


def test_read_ahead_runs_the_source_in_the_callers_context() -> None:
    def source() -> Iterator[str]:
        yield request.get()

    token = request.set("req-42")
    try:
        assert list(read_ahead(source())) == ["req-42"]
    finally:
        request.reset(token)
