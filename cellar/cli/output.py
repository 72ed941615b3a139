"""Printing for the CLI: tables for people, JSON for scripts, a progress bar while waiting."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

BAR_WIDTH = 24


def emit(data: Any, fmt: str, columns: Sequence[str] = ()) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(data, list):
        table(data, columns)
    else:
        fields(data)


def _cell(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"name"}:
        return str(value["name"])
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items() if k != "links")
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def fields(data: dict[str, Any]) -> None:
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if key != "links":
            print(f"{key.ljust(width)}  {_cell(value)}")


class Progress:
    """Shows the current step of a task; a redrawn bar on a terminal, lines otherwise."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.last = ""

    def show(self, status: str, task: dict[str, Any] | None) -> None:
        if task and task.get("steps"):
            done = int(task["step_number"]) - 1
            total = int(task["steps"])
            filled = BAR_WIDTH * done // total
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = f"[{bar}] {status} {done}/{total}: {task.get('description', task['step'])}"
        else:
            line = f"[{'#' * BAR_WIDTH}] {status}"
        if self.stream.isatty():
            self.stream.write("\r" + line.ljust(len(self.last)))
        elif line != self.last:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = line

    def close(self) -> None:
        if self.stream.isatty() and self.last:
            self.stream.write("\n")
            self.stream.flush()
