"""Backup files written and read without filling the host's page cache (seen with fincore)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from taskmanager.uncached import DropBehindFile, read_dropping

MIB = 1024 * 1024


def cached_bytes(path: Path) -> int:
    """How many bytes of ``path`` the page cache holds, as util-linux's fincore says."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


needs_fincore = pytest.mark.skipif(shutil.which("fincore") is None, reason="needs fincore")


def pieces(count: int, size: int) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(count)]


def test_every_byte_is_written_in_order(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    data = pieces(40, 100_003)
    with DropBehindFile(path, window=MIB) as out:
        for piece in data:
            assert out.write(piece) == len(piece)
        out.sync()
    assert out.size == sum(map(len, data))
    assert path.read_bytes() == b"".join(data)
    assert os.stat(path).st_mode & 0o777 == 0o600


@needs_fincore
def test_the_cache_holds_at_most_a_window_while_writing_and_nothing_after(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    seen: list[int] = []
    with DropBehindFile(path, window=MIB) as out:
        for piece in pieces(24, 512 * 1024):  # 12 MiB
            out.write(piece)
            seen.append(cached_bytes(path))
        out.sync()
        after = cached_bytes(path)
    assert max(seen) <= 2 * MIB  # one window, and the piece that filled it
    assert after == 0


@needs_fincore
def test_reading_drops_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    data = os.urandom(6 * MIB + 17)
    path.write_bytes(data)
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        got = list(read_dropping(fd, MIB // 2, window=MIB))
    finally:
        os.close(fd)
    assert b"".join(got) == data
    assert max(map(len, got)) == MIB // 2
    assert cached_bytes(path) == 0
