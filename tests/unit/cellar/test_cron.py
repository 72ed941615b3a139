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
        ("0 3 * * mon", dt.datetime(2026, 11, 30, 3, 0)),
        ("0 3 1 jan *", dt.datetime(2027, 1, 1, 3, 0)),
        ("@daily", dt.datetime(2026, 11, 26, 0, 0)),
        ("@HOURLY", dt.datetime(2026, 11, 25, 9, 0)),
        ("@weekly", dt.datetime(2026, 11, 29, 0, 0)),
    ],
)
def test_next_run(expression: str, expected: dt.datetime) -> None:
    assert cron.next_after(cron.parse(expression), WED) == expected


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * *", "five cron fields"),
        (None, "five cron fields"),
        ("0 0 * * * 5", "five cron fields"),  # no seconds field
        ("@reboot", "not a known nickname"),
        ("61 * * * *", "the minute field '61' must be within 0-59"),
        ("0 24 * * *", "the hour field '24' must be within 0-23"),
        ("*/0 * * * *", "minute field '\\*/0'"),
        ("0 0 * foo *", "month field 'foo' must be within 1-12 or jan-dec"),
        ("0 0 * * 9", "day of week field '9'"),
        ("H 3 * * *", "minute field 'H'"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expression: object, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        cron.next_after(cron.parse(expression), WED)


def test_a_schedule_keeps_its_spelling_but_loses_extra_blanks() -> None:
    assert cron.parse("  0  3 * *   1 ") == "0 3 * * 1"
    assert cron.parse("@Daily") == "@daily"
