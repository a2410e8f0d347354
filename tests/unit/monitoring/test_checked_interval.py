"""Which UTC day a drift run checks, with and without a data interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.monitoring.window import checked_interval


def test_a_run_with_a_data_interval_checks_it():
    start, end = datetime(2026, 3, 19, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC)
    assert checked_interval(start, end, datetime(2026, 3, 25, tzinfo=UTC)) == (start, end)


@pytest.mark.parametrize(
    "run_after",
    [
        datetime(2026, 3, 20, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 20, 23, 59, 59, tzinfo=UTC),
        # 01:30 in UTC+2 is still the 19th in UTC: the last complete UTC day is the 18th
        datetime(2026, 3, 20, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_a_manual_run_without_a_logical_date_checks_the_last_complete_utc_day(run_after):
    start, end = checked_interval(None, None, run_after)
    utc_day = run_after.astimezone(UTC).date()
    assert end == datetime(utc_day.year, utc_day.month, utc_day.day, tzinfo=UTC)
    assert end - start == timedelta(days=1) and start.tzinfo is not None


def test_half_an_interval_or_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="both ends"):
        checked_interval(datetime(2026, 3, 19, tzinfo=UTC), None, datetime(2026, 3, 20, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        checked_interval(None, None, datetime(2026, 3, 20))
