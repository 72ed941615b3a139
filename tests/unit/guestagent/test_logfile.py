from __future__ import annotations

from pathlib import Path

from guestagent.logfile import LogFile


def test_tail_reads_the_last_lines_across_blocks(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "log" / "engine.log")
    assert log.tail(5) == [] and log.size() == 0
    for number in range(3000):
        log.append(f"line {number} " + "x" * 40)
    assert log.tail(3) == [f"line {n} " + "x" * 40 for n in (2997, 2998, 2999)]
    assert len(log.tail(2500)) == 2500
    assert log.tail(0) == []


def test_append_rotates_past_the_size_limit(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "engine.log", max_bytes=100)
    for number in range(30):
        log.append(f"entry {number}")
    assert log.size() <= 100
    assert log.rotated.exists()
    assert log.tail(1) == ["entry 29"]
