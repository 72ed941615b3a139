"""Backup schedules: cron expressions in UTC, parsed and stepped by ``croniter``.

A schedule is five fields ("minute hour day-of-month month day-of-week") or one of the
nicknames ``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``. Fields take
what cron takes: ``*``, numbers, ranges, steps, lists and the names ``jan``..``dec`` and
``sun``..``sat``; as in cron, when both day fields are restricted a day matches if either
does. Use :func:`parse` to check a schedule given by a user (InvalidInput says what is
wrong) and :func:`next_after` for the next minute it fires.
"""

from __future__ import annotations

import datetime as dt
from typing import NewType

from croniter import CroniterBadDateError, CroniterError, croniter

from cellar.errors import InvalidInput

Schedule = NewType("Schedule", str)
NICKNAMES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
SEARCH_YEARS = 5
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat"),
)
ALLOWED = "(each a value, a range a-b, a step */n or a-b/n, or a list of these)"
USAGE = ('schedule must be five cron fields "minute hour day month weekday" in UTC, '
         'e.g. "0 3 * * *", or one of ' + ", ".join(NICKNAMES))  # fmt: skip


def parse(expression: object) -> Schedule:
    """The checked schedule, or InvalidInput naming what is wrong with it."""
    if not isinstance(expression, str):
        raise InvalidInput(USAGE)
    text = " ".join(expression.split())
    if text.startswith("@") and text.lower() not in NICKNAMES:
        raise InvalidInput(f"schedule {text!r} is not a known nickname; {USAGE}")
    if not text.startswith("@") and len(text.split()) != 5:
        raise InvalidInput(USAGE)
    try:
        croniter(text)  # seconds and hashed ("H") fields need more than five fields or an id
    except CroniterError as exc:
        raise InvalidInput(f"schedule {text!r} is not valid: {_bad_field(text)}") from exc
    return Schedule(text.lower() if text.startswith("@") else text)


def _bad_field(text: str) -> str:
    """Which field of ``text`` croniter refuses, tried one at a time, and what it allows."""
    fields = text.split()
    for i, (name, allowed) in enumerate(FIELDS):
        alone = ["*"] * 5
        alone[i] = fields[i]
        try:
            croniter(" ".join(alone))
        except CroniterError:
            return f"the {name} field {fields[i]!r} must be within {allowed} {ALLOWED}"
    return "the day fields never match together"


def next_after(schedule: Schedule, after: dt.datetime) -> dt.datetime:
    """The first minute strictly after ``after`` (naive UTC) when ``schedule`` fires."""
    try:
        moment = croniter(schedule, after, max_years_between_matches=SEARCH_YEARS)
        found = moment.get_next(dt.datetime)
    except CroniterBadDateError as exc:
        problem = f"schedule {schedule!r} never fires (check the day and month fields)"
        raise InvalidInput(problem) from exc
    assert isinstance(found, dt.datetime)
    return found.replace(tzinfo=None)
