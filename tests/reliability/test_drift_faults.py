"""Cases 9 and 10: bad analysis windows, and retraining triggers that must fire at most once.

Real traffic (the traffic simulator's HTTP requests to the served champion, with covariate
drift) lands in the inference log; ``drift_monitor`` runs per window with ``dag.test()``;
the retraining runs it triggers are real ``ml_training`` runs (queued: no scheduler here).

Case 9, faults: an empty window, a window whose schema changed (a feature column missing),
a window where a feature is NaN in every row. Expected: "skipped: insufficient data" for the
empty one, a failed ``check_drift`` naming the column for the others. State checked: no
"no drift" verdict (no metrics written), no retraining triggered.

Case 10, faults: the trigger is retried after its retraining run was created; drift is
found while that retraining runs; the trigger's first attempt died after recording its
decision but before creating the run. Expected: no error and no second run for the first
two; the third creates the one run that was missing. State checked: the ``ml_training``
runs named ``drift__<day>``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from tests.reliability.conftest import LAST_DAY, run_dag

pytestmark = pytest.mark.reliability

TRAFFIC_START = LAST_DAY + timedelta(days=20)
DRIFTED = [TRAFFIC_START + timedelta(days=offset) for offset in range(3)]
EMPTY_DAY = TRAFFIC_START + timedelta(days=5)
SCHEMA_CHANGED_DAY = TRAFFIC_START + timedelta(days=6)
ALL_NAN_DAY = TRAFFIC_START + timedelta(days=7)


def _utc(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _check(stack, request, day):
    # a manual run's data interval is the schedule interval that ends at its logical date
    return run_dag(
        stack, "drift_monitor", request, logical_date=_utc(day + timedelta(days=1)), run_conf={"min_rows": 100}
    )


def _retraining_runs() -> dict[str, str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            run.run_id: str(run.state)
            for run in session.query(DagRun).filter(DagRun.dag_id == "ml_training", DagRun.run_id.like("drift__%"))
        }


def _set_state(run_id: str, state: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == "ml_training", DagRun.run_id == run_id).one().state = state


@pytest.fixture(scope="module")
def traffic(stack, champion_run):
    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate

    simulate(
        stack.settings,
        stack.spec,
        stack.settings.serving_url,
        TRAFFIC_START,
        len(DRIFTED),
        250,
        drift=DriftConfig(kind="covariate", start=TRAFFIC_START, strength=1.0),
        land_to_training_data=False,
    )
    return stack


def _write_broken_window(stack, day, break_rows) -> None:
    from include.monitoring.inference_log import read_window

    rows = read_window(stack.settings.inference_log, _utc(DRIFTED[0]), _utc(DRIFTED[0] + timedelta(days=1)))
    broken = break_rows(
        rows.drop(columns=["label"], errors="ignore").assign(
            timestamp=rows["timestamp"] + (_utc(day) - _utc(DRIFTED[0]))
        )
    )
    folder = Path(stack.settings.inference_log) / "predictions" / f"date={day.isoformat()}"
    folder.mkdir(parents=True)
    broken.to_parquet(folder / "broken.parquet", index=False)


WINDOW_FAULTS = {
    "empty_window": (EMPTY_DAY, None, "skipped", "skipped: insufficient data"),
    "schema_changed_window": (
        SCHEMA_CHANGED_DAY,
        lambda rows: rows.drop(columns=["contract"]),
        "failed",
        "missing column(s) 'contract'",
    ),
    "all_nan_column": (
        ALL_NAN_DAY,
        lambda rows: rows.assign(tenure_months=float("nan")),
        "failed",
        "column 'tenure_months' is empty",
    ),
}


@pytest.mark.parametrize("fault", list(WINDOW_FAULTS))
def test_a_bad_window_is_never_no_drift_and_never_a_trigger(traffic, request, fault):
    stack = traffic
    day, break_rows, state, message = WINDOW_FAULTS[fault]
    if break_rows is not None:
        _write_broken_window(stack, day, break_rows)
    runs_before = _retraining_runs()

    result = _check(stack, request, day)

    assert result.states["check_drift"] == state, result.states
    assert result.states["trigger_retraining"] in ("skipped", "upstream_failed"), result.states
    if result.output:
        assert message in result.output, f"the log does not say {message!r}"
    assert not (Path(stack.settings.reports) / "drift" / day.isoformat() / "metrics.json").exists()
    assert _retraining_runs() == runs_before


def test_retried_trigger_and_drift_during_training_create_no_second_run(traffic, request):
    stack = traffic
    # the Airflow database is the session's: other tests' finished retraining runs may be in it
    before = _retraining_runs()
    first = _check(stack, request, DRIFTED[0])
    assert first.states == {"check_drift": "success", "trigger_retraining": "success"}, first.states
    run_id = f"drift__{DRIFTED[0].isoformat()}"
    try:
        assert _retraining_runs() == {**before, run_id: "queued"}

        # the trigger again (a retry, or a cleared task) after its run was created
        retried = _check(stack, request, DRIFTED[0])
        assert "failed" not in retried.states.values(), retried.states
        assert retried.states["trigger_retraining"] == "skipped"
        assert _retraining_runs() == {**before, run_id: "queued"}

        # drift in the next window while that retraining runs
        _set_state(run_id, "running")
        during = _check(stack, request, DRIFTED[1])
        assert during.states == {"check_drift": "success", "trigger_retraining": "skipped"}, during.states
        if during.output:
            assert "already queued/running" in during.output
        assert _retraining_runs() == {**before, run_id: "running"}
    finally:
        # finished, whatever happened, so that the next test starts with no retraining active
        _set_state(run_id, "success")


def test_a_trigger_that_died_before_creating_its_run_is_not_lost(traffic, request):
    from airflow.models.variable import Variable

    from mlops_airflow.retraining import LAST_TRIGGER_VARIABLE

    stack = traffic
    day = DRIFTED[2]
    for state in _retraining_runs().values():
        assert state not in ("queued", "running"), "a retraining is still active"
    # what the first attempt recorded before it died: the decision, but no run
    Variable.set(
        LAST_TRIGGER_VARIABLE,
        json.dumps(
            {
                "window_start": day.isoformat(),
                "window_end": (day + timedelta(days=1)).isoformat(),
                "training_run_id": f"drift__{day.isoformat()}",
                "drift_run_id": "died",
            }
        ),
    )
    before = _retraining_runs()

    retried = _check(stack, request, day)

    assert retried.states == {"check_drift": "success", "trigger_retraining": "success"}, retried.states
    assert _retraining_runs() == {**before, f"drift__{day.isoformat()}": "queued"}


def test_concurrent_windows_decide_one_at_a_time():
    """Case 11's configuration: several drift runs may be active at once, and their triggers take turns.

    The scheduler runs ``trigger_retraining`` in the ``retrain_trigger`` pool, which the
    project's settings give exactly one slot: the windows decide in turn, each seeing the
    retraining run the previous one created (the sequence checked above). The real
    scheduler doing so is ``test_concurrent_backfill.py``; this checks the settings that
    any deployment's copy of ``airflow_settings.yaml`` must keep.
    """
    from airflow.dag_processing.dagbag import DagBag

    from scripts.airflow_settings import load_settings_file
    from tests.reliability.conftest import ROOT

    dag = DagBag(dag_folder=str(ROOT / "dags" / "drift_monitor.py")).dags["drift_monitor"]
    assert dag.max_active_runs > 1, "drift windows never run concurrently"
    trigger = dag.get_task("trigger_retraining")
    assert (trigger.pool, trigger.pool_slots) == ("retrain_trigger", 1)
    settings = load_settings_file(ROOT / "airflow_settings.yaml", {"MLOPS_HOME": "/srv/mlops"})
    assert settings.pools["retrain_trigger"]["slots"] == 1
