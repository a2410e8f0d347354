"""Reading the landing zone: which days exist, window bounds, and broken partitions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from include.data.partitions import DataError, partition_dates, read_window
from include.simulation.generate import generate_day, land_days

START = date(2026, 10, 1)


@pytest.fixture
def landed(spec):
    return land_days(spec, START, days=4, rows_per_day=30, seed=7)


def test_partition_dates_lists_landed_days_only(spec, landed):
    root = Path(spec.location)
    (root / "_SUCCESS").write_text("")
    (root / ".staging").mkdir()
    # a day whose only file is still being written is not a partition yet
    (root / "date=2026-10-09").mkdir()
    (root / "date=2026-10-09" / ".part-0.parquet.123.tmp").write_bytes(b"half")

    assert partition_dates(spec) == [START + timedelta(days=offset) for offset in range(4)]


def test_no_landing_folder_means_no_dates(spec):
    assert partition_dates(spec) == []


def test_read_window_is_start_inclusive_end_exclusive_in_date_order(spec, landed):
    frame = read_window(spec, date(2026, 10, 2), date(2026, 10, 4))

    expected = pd.concat(
        [generate_day(spec, date(2026, 10, 2), 30, 7), generate_day(spec, date(2026, 10, 3), 30, 7)], ignore_index=True
    )
    pd.testing.assert_frame_equal(frame, expected)
    assert list(frame.index) == list(range(60))
    assert "date" not in frame.columns, "the partition folder name must not become a column"


def test_empty_window_names_dataset_dates_and_location(spec, landed):
    with pytest.raises(DataError) as error:
        read_window(spec, date(2026, 1, 1), date(2026, 1, 29))
    assert str(error.value) == (f"no partitions of customer_churn between 2026-01-01 and 2026-01-29 in {spec.location}")
    with pytest.raises(DataError, match="start 2026-10-03 is not before end 2026-10-02"):
        read_window(spec, date(2026, 10, 3), date(2026, 10, 2))
    assert issubclass(DataError, ValueError)


def test_truncated_partition_is_named(spec, landed):
    broken = landed[2]
    broken.write_bytes(broken.read_bytes()[:200])

    assert read_window(spec, START, date(2026, 10, 3)).shape[0] == 60  # the window before it still reads
    with pytest.raises(DataError, match=str(broken)):
        read_window(spec, START, date(2026, 10, 5))


def test_badly_named_partition_folder_is_named(spec, landed):
    (Path(spec.location) / "date=2026-13-01").mkdir()
    with pytest.raises(DataError, match="date=2026-13-01"):
        read_window(spec, START, date(2026, 10, 5))


def test_schema_problems_reach_the_caller_unfixed(spec, landed):
    day3 = pd.read_parquet(landed[2])
    day3.drop(columns=["region"]).to_parquet(landed[2], index=False)
    day4 = pd.read_parquet(landed[3])
    day4["monthly_charges"] = day4["monthly_charges"].astype(str)
    day4.to_parquet(landed[3], index=False)

    frame = read_window(spec, START, date(2026, 10, 5))

    assert len(frame) == 120
    assert frame["region"].iloc[60:90].isna().all()
    assert frame["region"].iloc[:60].notna().all()
    # strings stay strings: coercing them is not the reader's call, validation rejects them
    assert frame["monthly_charges"].dtype == object
    assert isinstance(frame["monthly_charges"].iloc[100], str)
