"""Small line charts of an instance's metrics as inline SVG, drawn on the server."""

from __future__ import annotations

import dataclasses
from typing import Any

WIDTH, HEIGHT = 320, 90
SHOWN = (
    ("connections", "connections"),
    ("transactions_per_second", "transactions / s"),
    ("commands_per_second", "commands / s"),
    ("cache_hit_ratio", "cache hit ratio"),
    ("memory_bytes", "memory (MB)"),
    ("replication_lag_seconds", "replication lag (s)"),
)


@dataclasses.dataclass(frozen=True)
class Chart:
    name: str
    label: str
    points: str  # the SVG polyline's points
    end: tuple[str, str]  # the last point, marked so that one sample alone shows
    last: float
    high: float
    count: int


def charts(samples: list[dict[str, Any]]) -> list[Chart]:
    """One chart per metric the samples carry (in ``SHOWN``'s order)."""
    made = []
    for name, label in SHOWN:
        values = [(i, s[name]) for i, s in enumerate(samples) if s.get(name) is not None]
        if not values:
            continue
        scale = 1 / (1024 * 1024) if name == "memory_bytes" else 1.0
        numbers = [(i, float(v) * scale) for i, v in values]
        high = max(v for _i, v in numbers) or 1.0
        span = max(len(samples) - 1, 1)
        xy = [(f"{i * WIDTH / span:.1f}", f"{HEIGHT - 2 - v * (HEIGHT - 6) / high:.1f}")
              for i, v in numbers]  # fmt: skip
        points = " ".join(f"{x},{y}" for x, y in xy)
        last, top = round(numbers[-1][1], 3), round(high, 3)
        made.append(Chart(name, label, points, xy[-1], last, top, len(numbers)))
    return made
