"""``make demo DATASET=spec``: how the landed days are split and the drift windows planned (no Airflow)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from scripts.demo import MAX_WINDOW_DAYS, Window, min_rows_for, plan_windows, split_days, training_conf


def days(first: date, count: int, step: int = 1) -> list[date]:
    return [first + timedelta(days=index * step) for index in range(count)]


@pytest.mark.parametrize("count, history", [(1, 1), (2, 1), (3, 2), (5, 4), (10, 7), (100, 70), (1461, 1023)])
def test_history_is_about_the_first_70_percent_with_one_day_at_least_and_one_left_to_replay(count, history):
    landed = days(date(2012, 1, 1), count)
    first, later = split_days(list(reversed(landed)))
    assert first == landed[:history] and later == landed[history:]


def test_a_snapshot_is_all_history_and_no_days_is_an_error():
    assert split_days([date(2026, 6, 1)]) == ([date(2026, 6, 1)], [])
    with pytest.raises(ValueError):
        split_days([])


def test_the_first_champion_learns_from_the_whole_calendar_span_of_the_history():
    history = [date(2026, 4, 1), date(2026, 5, 1)]  # two monthly snapshots
    assert training_conf("breast_cancer", history) == {
        "reason": "make demo: breast_cancer",
        "model_type": "sklearn_hgb",
        "training_window_end": "2026-05-01",
        "training_window_days": 31,
    }
    assert training_conf("x", [date(2026, 6, 1)])["training_window_days"] == 1
    # the param's maximum
    assert training_conf("x", [date(2000, 1, 1), date(2026, 1, 1)])["training_window_days"] == 3660


def test_min_rows_is_half_the_rows_at_most_200_at_least_1():
    assert [min_rows_for(rows) for rows in (0, 1, 3, 94, 400, 401, 10_000)] == [1, 1, 1, 47, 200, 200, 200]


def test_windows_split_the_replayed_days_into_at_most_five_consecutive_runs():
    replayed = [(day, 1) for day in days(date(2014, 10, 20), 438)]
    windows = plan_windows(replayed)
    assert len(windows) == 5
    assert [w.days for w in windows] == [88, 88, 88, 87, 87]
    assert windows[0].first == date(2014, 10, 20) and windows[-1].last == date(2015, 12, 31)
    # consecutive, nothing skipped, nothing twice
    for before, after in zip(windows, windows[1:], strict=False):
        assert after.first == before.last + timedelta(days=1)
    assert sum(w.days for w in windows) == 438
    first = windows[0]
    assert first.window_days == 88 and first.rows == 88 and not first.truncated
    assert first.logical_date == first.last + timedelta(days=1)
    assert first.conf == {"window_days": 88, "min_rows": 44}


def test_fewer_days_than_windows_gives_one_window_per_day():
    replayed = [(date(2026, 7, 1), 94), (date(2026, 8, 1), 120)]
    windows = plan_windows(replayed)
    assert windows == [
        Window(date(2026, 7, 1), date(2026, 7, 1), 1, 94, 1),
        Window(date(2026, 8, 1), date(2026, 8, 1), 1, 120, 1),
    ]
    assert windows[0].label == "2026-07-01" and windows[0].conf == {"window_days": 1, "min_rows": 47}
    assert windows[1].logical_date == date(2026, 8, 2)


def test_sparse_days_span_their_calendar_and_a_window_reads_at_most_90_days():
    # monthly snapshots: each window reads from its first day to its last
    monthly = [(day, 100) for day in (date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1))]
    (window,) = plan_windows(monthly, max_windows=1)
    assert window.window_days == 31 + 28 + 1 and window.rows == 300 and window.label == "2026-01-01..2026-03-01"
    # longer than drift_monitor's window_days maximum: the check reads the last 90 days only
    sparse = [(day, 10) for day in days(date(2020, 1, 1), 10, step=30)]
    (window,) = plan_windows(sparse, max_windows=1)
    assert window.window_days == MAX_WINDOW_DAYS and window.truncated
    assert window.rows == 30  # the days within the last 90: day 0, 30 and 60 before the last
    assert window.conf == {"window_days": 90, "min_rows": 15}


def test_window_planning_rejects_a_day_twice():
    with pytest.raises(ValueError):
        plan_windows([(date(2026, 1, 1), 1), (date(2026, 1, 1), 2)])
