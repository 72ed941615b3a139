"""Five-field cron schedules ("minute hour day-of-month month day-of-week"), in UTC.

Use :func:`parse` to check a schedule given by a user (InvalidInput says what is wrong)
and :func:`next_after` for the next minute it fires. Fields take ``*``, numbers, ranges
``a-b``, steps ``*/n`` or ``a-b/n`` and lists ``a,b``; day-of-week 0 and 7 are Sunday.
As in cron, when both day fields are restricted a day matches if either does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cellar.errors import InvalidInput

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))  # fmt: skip
SEARCH_DAYS = 366 * 5


@dataclasses.dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: dt.datetime) -> bool:
        weekday = (day.weekday() + 1) % 7
        by_day, by_weekday = day.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, last = base.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = end = int(base)
        except ValueError as exc:
            raise InvalidInput(f"schedule {name} {text!r} is not a cron field") from exc
        if step < 1 or not low <= start <= end <= high:
            raise InvalidInput(f"schedule {name} {text!r} must stay within {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse(expression: object) -> Schedule:
    """The schedule of a five-field cron expression, or InvalidInput naming the bad field."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise InvalidInput(
            'schedule must be five cron fields "minute hour day month weekday", e.g. "0 3 * * *"'
        )
    parts = expression.split()
    sets = [_field(text, *spec) for text, spec in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Schedule(sets[0], sets[1], sets[2], sets[3], weekdays,
                    any_day=parts[2] == "*", any_weekday=parts[4] == "*")  # fmt: skip


def next_after(schedule: Schedule, after: dt.datetime) -> dt.datetime:
    """The first minute strictly after ``after`` (naive UTC) when ``schedule`` fires."""
    moment = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    end = moment + dt.timedelta(days=SEARCH_DAYS)
    while moment < end:
        if moment.month not in schedule.months or not schedule.day_matches(moment):
            moment = (moment + dt.timedelta(days=1)).replace(hour=0, minute=0)
        elif moment.hour not in schedule.hours:
            moment = (moment + dt.timedelta(hours=1)).replace(minute=0)
        elif moment.minute not in schedule.minutes:
            moment += dt.timedelta(minutes=1)
        else:
            return moment
    raise InvalidInput("schedule never fires (check the day and month fields)")
