from __future__ import annotations

import datetime as dt

import pytest

from cellar import cron
from cellar.errors import InvalidInput

WED = dt.datetime(2026, 11, 25, 8, 7, 30)  # a Wednesday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 3 * * *", dt.datetime(2026, 11, 26, 3, 0)),
        ("*/15 * * * *", dt.datetime(2026, 11, 25, 8, 15)),
        ("8 8 * * *", dt.datetime(2026, 11, 25, 8, 8)),
        ("0 12 * * 0", dt.datetime(2026, 11, 29, 12, 0)),
        ("0 12 * * 7", dt.datetime(2026, 11, 29, 12, 0)),
        ("0 0 * * 1-5", dt.datetime(2026, 11, 26, 0, 0)),
        ("30 4 1 * 0", dt.datetime(2026, 11, 29, 4, 30)),  # the 1st or a Sunday
        ("0 0 29 2 *", dt.datetime(2028, 2, 29, 0, 0)),
        ("5,35 9-10 * 11,12 *", dt.datetime(2026, 11, 25, 9, 5)),
    ],
)
def test_next_run(expression: str, expected: dt.datetime) -> None:
    assert cron.next_after(cron.parse(expression), WED) == expected


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * *", "five cron fields"),
        (None, "five cron fields"),
        ("61 * * * *", "minute '61' must stay within 0-59"),
        ("0 24 * * *", "hour"),
        ("*/0 * * * *", "minute"),
        ("a * * * *", "not a cron field"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expression: object, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        cron.next_after(cron.parse(expression), WED)
