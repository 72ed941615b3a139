"""Workflows as lists of small, idempotent, labelled steps.

A step looks at the world, acts only if needed, and ends in exactly one decision:
``NEXT`` (go on to the following step), ``Hop(label)``, ``Nap(seconds)`` (run this
step again later) or ``DONE``. The runner persists the decision, so a crash
resumes at the recorded step. Raise ``StepFailed`` for a failure that retrying
cannot fix; any other exception is retried until the step's deadline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cellar.settings import Settings
    from cellar.workflows import WorkflowName
    from taskmanager.context import StepContext


@dataclasses.dataclass(frozen=True)
class Hop:
    label: str


@dataclasses.dataclass(frozen=True)
class Nap:
    seconds: float


class _Next:
    def __repr__(self) -> str:
        return "NEXT"


class _Done:
    def __repr__(self) -> str:
        return "DONE"


NEXT = _Next()
DONE = _Done()
Decision = Hop | Nap | _Next | _Done


class StepFailed(Exception):
    """A failure that retrying the step cannot fix; its message becomes the fault."""


@dataclasses.dataclass(frozen=True)
class Step:
    label: str
    run: Callable[[StepContext], Decision]
    deadline: float | str  # seconds, or the name of a Settings field holding them
    describe: str

    def deadline_in(self, settings: Settings) -> float:
        if isinstance(self.deadline, str):
            return float(getattr(settings, self.deadline))
        return self.deadline


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A named list of steps, plus what to do when one fails for good."""

    name: WorkflowName
    steps: tuple[Step, ...]
    on_failure: Callable[[StepContext, str], None] | None = None
    on_success: Callable[[StepContext], None] | None = None
    waits_for_earlier: bool = True  # run only after the instance's earlier tasks end

    def step(self, label: str) -> Step:
        for step in self.steps:
            if step.label == label:
                return step
        raise KeyError(f"workflow {self.name} has no step {label!r}")

    def after(self, label: str) -> str | None:
        labels = [s.label for s in self.steps]
        index = labels.index(label)
        return labels[index + 1] if index + 1 < len(labels) else None

    def position(self, label: str) -> int:
        return [s.label for s in self.steps].index(label) + 1

    @property
    def first(self) -> str:
        return self.steps[0].label
