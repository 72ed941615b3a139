from __future__ import annotations

from pathlib import Path

import pytest

from guestagent.errors import UnsafePath
from guestagent.logfile import LogFile


def test_tail_reads_the_last_lines_across_blocks(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "log" / "engine.log")
    assert log.tail(5) == [] and log.size() == 0
    for number in range(3000):
        log.append(f"line {number} " + "x" * 40)
    assert log.tail(3) == [f"line {n} " + "x" * 40 for n in (2997, 2998, 2999)]
    assert len(log.tail(2500)) == 2500
    assert log.tail(0) == []


def test_read_from_gives_the_bytes_from_an_offset_in_blocks(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "engine.log")
    assert list(log.read_from(0)) == []
    for number in range(3000):
        log.append(f"line {number} " + "y" * 40)
    whole = log.path.read_bytes()
    pieces = list(log.read_from(0))
    assert b"".join(pieces) == whole and len(pieces) > 1
    assert b"".join(log.read_from(len(whole) - 7)) == whole[-7:]
    assert list(log.read_from(len(whole) + 100)) == []


def test_append_rotates_past_the_size_limit(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "engine.log", max_bytes=100)
    for number in range(30):
        log.append(f"entry {number}")
    assert log.size() <= 100
    assert log.rotated.exists()
    assert log.tail(1) == ["entry 29"]


def test_a_linked_log_is_neither_written_nor_read(tmp_path: Path) -> None:
    outside = tmp_path / "shadow"
    outside.write_bytes(b"root's secret\n")
    folder = tmp_path / "data" / "log"
    folder.mkdir(parents=True)
    (folder / "engine.log").symlink_to(outside)
    log = LogFile(folder / "engine.log")

    log.append("a line the tenant wants in root's file")
    log.append("and another one")

    assert outside.read_bytes() == b"root's secret\n"
    with pytest.raises(UnsafePath, match="symlink"):
        log.tail(5)


def test_a_log_folder_swapped_for_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "log").symlink_to(outside, target_is_directory=True)
    log = LogFile(tmp_path / "data" / "log" / "engine.log")

    log.append("a line")

    assert list(outside.iterdir()) == []
