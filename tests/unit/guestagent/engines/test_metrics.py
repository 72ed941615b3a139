"""What every engine's metrics share: the hit ratio and the container's memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestagent.engines.metrics import container_memory, hit_ratio


@pytest.mark.parametrize(
    ("hits", "misses", "ratio"),
    [(90.0, 10.0, 0.9), (0.0, 5.0, 0.0), (7.0, 0.0, 1.0), (0.0, 0.0, 1.0)],
)
def test_hit_ratio_is_one_before_anything_was_looked_up(
    hits: float, misses: float, ratio: float
) -> None:
    assert hit_ratio(hits, misses) == ratio


def test_container_memory_reads_cgroup_v2_then_v1(tmp_path: Path) -> None:
    assert container_memory(tmp_path) is None

    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("1048576\n")
    assert container_memory(tmp_path) == 1048576.0

    (tmp_path / "memory.current").write_text("2097152\n")
    assert container_memory(tmp_path) == 2097152.0


def test_container_memory_skips_a_file_it_cannot_parse(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text("max\n")
    assert container_memory(tmp_path) is None

    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("4096\n")
    assert container_memory(tmp_path) == 4096.0
