"""Schedules: drift_monitor runs once per UTC day for the day that just closed; ml_training only on demand."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags


def _core_timetable(dag):
    from airflow.serialization.encoders import coerce_to_core_timetable

    return coerce_to_core_timetable(dag.timetable)


def _runs(timetable, earliest, latest, catchup: bool):
    """The runs the scheduler would create between earliest and latest, as (interval start, end, run_after)."""
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(earliest=earliest, latest=latest, catchup=catchup)
    runs, last = [], None
    while info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction):
        runs.append((info.data_interval.start, info.data_interval.end, info.run_after))
        last = info.data_interval
    return runs


def test_drift_monitor_runs_nightly_for_the_day_that_closed(dags):
    timetable = _core_timetable(dags["drift_monitor"])
    utc = pendulum.timezone("UTC")
    # `latest` bounds the interval starts (logical dates), inclusive
    runs = _runs(timetable, pendulum.datetime(2026, 3, 1, tz=utc), pendulum.datetime(2026, 3, 4, tz=utc), True)
    day = lambda d: pendulum.datetime(2026, 3, d, tz=utc)  # noqa: E731
    # one run per day, each covering exactly one UTC day and starting when that day is over
    assert runs == [(day(d), day(d + 1), day(d + 1)) for d in range(1, 5)]


def test_catchup_gives_one_run_per_interval_without_gaps_or_overlaps(dags):
    timetable = _core_timetable(dags["drift_monitor"])
    utc = pendulum.timezone("UTC")
    runs = _runs(timetable, pendulum.datetime(2026, 1, 1, tz=utc), pendulum.datetime(2026, 1, 31, tz=utc), True)
    assert len(runs) == 31
    assert all(prev[1] == cur[0] for prev, cur in zip(runs, runs[1:], strict=False))


def test_without_catchup_only_the_latest_closed_day_is_scheduled(dags):
    from airflow.timetables.base import TimeRestriction

    timetable = _core_timetable(dags["drift_monitor"])
    start = dags["drift_monitor"].start_date
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=start, latest=None, catchup=False)
    )
    today = pendulum.now("UTC").start_of("day")
    assert dags["drift_monitor"].catchup is False
    assert (info.data_interval.start, info.data_interval.end) == (today.subtract(days=1), today)


def test_backfill_creates_one_run_per_day_of_the_range(dags):
    from airflow.models.backfill import _get_info_list

    dag = dags["drift_monitor"]
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    utc = pendulum.timezone("UTC")
    infos = _get_info_list(
        from_date=pendulum.datetime(2026, 3, 1, tz=utc),
        to_date=pendulum.datetime(2026, 3, 10, tz=utc),
        reverse=False,
        dag=serialized,
    )
    starts = [info.data_interval.start for info in infos]
    assert starts == [pendulum.datetime(2026, 3, d, tz=utc) for d in range(1, 11)]


def test_training_and_rollback_run_only_when_triggered(dags):
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    for dag_id in ("ml_training", "ml_rollback"):
        assert isinstance(dags[dag_id].timetable, NullTimetable), dag_id
