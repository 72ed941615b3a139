"""Runs crash cells: for a scenario, a step and a moment (before it, or during it), the
worker is killed there, started again at once, and the workflow must converge.

A cell passes when the worker died where the fault said, every task of the project then
ended within ``CONVERGE_WITHIN`` seconds of the new worker's start, the scenario's own
check found nothing wrong (its outcome is ACTIVE/COMPLETED/GONE, or ERROR with a fault)
and nothing was left without an owner. Its seconds are from the new worker's start to
the last task's end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator

from taskmanager.workflows import WORKFLOWS
from tests.chaos.checks import leftovers, running_tasks, wait_settled
from tests.chaos.scenarios import SCENARIOS, Scenario
from tests.chaos.world import World

logger = logging.getLogger(__name__)

WHEN = ("before", "during")
DEATH_WITHIN = 240.0  # seconds for the fault to fire once the request is sent
CONVERGE_WITHIN = 240.0


@dataclasses.dataclass(frozen=True)
class Cell:
    scenario: Scenario
    step: str
    when: str

    @property
    def name(self) -> str:
        return f"{self.scenario.name} / {self.step} / {self.when}"


@dataclasses.dataclass
class Result:
    cell: Cell
    outcome: str = ""
    seconds: float | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def matrix(full: bool, only: str = "") -> Iterator[Cell]:
    """Every cell (``full``), or one per scenario: during its slice step."""
    for scenario in SCENARIOS:
        if only and only not in scenario.name:
            continue
        if not full:
            yield Cell(scenario, scenario.slice_step, "during")
            continue
        skipped = dict(scenario.off_path)
        for step in WORKFLOWS[scenario.workflow].steps:
            if step.label not in skipped:
                for when in WHEN:
                    yield Cell(scenario, step.label, when)


def off_path(only: str = "") -> list[tuple[str, str, str]]:
    """The steps no scenario takes, with the reason."""
    return [
        (s.name, step, why)
        for s in SCENARIOS
        if not only or only in s.name
        for step, why in s.off_path
    ]


def run_cell(world: World, cell: Cell) -> Result:
    chaos, project = world.chaos, world.api.project
    result = Result(cell)
    try:
        prepared = cell.scenario.prepare(world)
    except Exception as exc:  # a failed arrangement is this cell's failure, with its reason
        logger.exception("setting up %s failed", cell.name)
        result.outcome, result.problems = "not set up", [f"{type(exc).__name__}: {exc}"]
        chaos.keep_worker()
        return result
    chaos.arm(cell.scenario.workflow.value, cell.step, cell.when)
    try:
        started = cell.scenario.act(world, prepared)
        died = chaos.wait_for_death(DEATH_WITHIN, lambda: not running_tasks(chaos.db, project))
    except Exception as exc:
        logger.exception("starting %s failed", cell.name)
        chaos.disarm()
        chaos.keep_worker()
        result.outcome, result.problems = "not started", [f"{type(exc).__name__}: {exc}"]
        return result
    chaos.disarm()
    if not died:
        result.problems.append("the fault never fired: the workflow did not reach this step")
    else:
        back = chaos.restart_worker()
        if not wait_settled(chaos.db, project, CONVERGE_WITHIN):
            result.problems.append(
                f"did not converge within {CONVERGE_WITHIN:.0f} s: "
                + ", ".join(running_tasks(chaos.db, project))
            )
        result.seconds = time.monotonic() - back
    try:
        outcome, problems = cell.scenario.check(world, started)
    except Exception as exc:
        logger.exception("checking %s failed", cell.name)
        outcome, problems = "check failed", [f"{type(exc).__name__}: {exc}"]
    result.outcome = outcome
    result.problems += problems
    result.problems += leftovers(chaos.db, chaos.settings, project)
    return result


def run(world: World, cells: Iterable[Cell]) -> list[Result]:
    """Run the cells one after the other, printing each row as it ends."""
    results = []
    for cell in cells:
        result = run_cell(world, cell)
        results.append(result)
        print(row(result), flush=True)
    return results


def header() -> str:
    return f"{'workflow':<22} {'step':<18} {'kill':<7} {'converged in':>12}  outcome"


def row(result: Result) -> str:
    seconds = "-" if result.seconds is None else f"{result.seconds:.1f} s"
    mark = "ok  " if result.passed else "FAIL"
    line = (
        f"{result.cell.scenario.name:<22} {result.cell.step:<18} {result.cell.when:<7} "
        f"{seconds:>12}  {mark} {result.outcome}"
    )
    return "\n".join([line, *(f"{'':>62}- {problem}" for problem in result.problems)])
