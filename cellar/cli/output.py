"""Printing for the CLI: tables for people, JSON for scripts, a progress bar while waiting.

Tables and bars are drawn by ``rich``. Off a terminal (a pipe, a file, a CI log) a table
is as wide as its longest row, so every row stays on one line for ``grep`` and ``awk``;
on a terminal rich fits it to the window but never folds an id, which people copy.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as Bars
from rich.table import Table

UNFOLDED = ("id", "name")  # columns whose text is copied whole, ending with these words
FOLD_MIN = 10


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


def _print(grid: Table, cells: list[list[str]], folded: Sequence[bool]) -> None:
    """Print ``grid`` to stdout without trailing blanks. Off a terminal it is as wide as
    its longest row; on one it fits the window but leaves unfolded columns whole and
    every other column at least ``FOLD_MIN`` wide (the terminal wraps what is left)."""
    longest = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    natural = sum(longest) + 2 * len(longest)
    terminal = sys.stdout.isatty()
    if terminal:
        pairs = zip(longest, folded, strict=True)
        least = sum(min(n, FOLD_MIN) if fold else n for n, fold in pairs)
        width = max(least + 2 * len(longest), min(natural, Console().width))
    else:
        width = natural
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=terminal, highlight=False).print(
        grid, markup=False, crop=False
    )
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def _plain_table(show_header: bool) -> Table:
    return Table(box=None, show_header=show_header, pad_edge=False, padding=(0, 2, 0, 0),
                 header_style="bold", show_edge=False)  # fmt: skip


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[c.upper() for c in columns]] + [[_cell(row.get(c)) for c in columns] for row in rows]
    grid = _plain_table(show_header=True)
    folded = [not column.endswith(UNFOLDED) for column in columns]
    for i, fold in enumerate(folded):
        least = None if fold else max(len(r[i]) for r in cells)
        grid.add_column(cells[0][i], no_wrap=not fold, min_width=least, overflow="fold")
    for row in cells[1:]:
        grid.add_row(*row)
    _print(grid, cells, folded)


def fields(data: dict[str, Any]) -> None:
    cells = [[key, _cell(value)] for key, value in data.items() if key != "links"]
    if not cells:
        return
    grid = _plain_table(show_header=False)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in cells:
        grid.add_row(key, value)
    _print(grid, cells, (False, True))


class Progress:
    """Shows the current step of a task: a live bar on a terminal, one line per change
    otherwise (so a CI log reads as a list of steps)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.last = ""
        self.bars: Bars | None = None
        self.bar: TaskID | None = None

    def _line(self, status: str, task: dict[str, Any] | None) -> tuple[str, int, int]:
        if task and task.get("steps"):
            done, total = int(task["step_number"]) - 1, int(task["steps"])
            return f"{status} {done}/{total}: {task.get('description', task['step'])}", done, total
        return status, 1, 1

    def show(self, status: str, task: dict[str, Any] | None) -> None:
        line, done, total = self._line(status, task)
        if self.stream.isatty():
            if self.bars is None:
                console = Console(file=self.stream, highlight=False)
                self.bars = Bars(BarColumn(bar_width=24), TextColumn("{task.description}"),
                                 console=console, transient=False)  # fmt: skip
                self.bars.start()
                self.bar = self.bars.add_task(line, total=total)
            assert self.bar is not None
            self.bars.update(self.bar, description=line, completed=done, total=total)
        elif line != self.last:
            self.stream.write(line + "\n")
            self.stream.flush()
        self.last = line

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
