"""drift_monitor end to end on the local profile: served traffic -> drift -> one retraining.

A champion is trained and served for real; the traffic simulator sends days of
requests to it (drift from the third day); drift_monitor then runs per window
with ``dag.test()``. The retraining runs it triggers are real Airflow runs
(queued, since no scheduler runs them here), so the guards see real state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.conftest import DAYS, LAST_DAY, finish_retraining_runs, run_dag, xcom_value

pytestmark = pytest.mark.integration

TRAFFIC_START = LAST_DAY + timedelta(days=1)
TRAFFIC_DAYS = 4
DRIFT_FROM = TRAFFIC_START + timedelta(days=2)
EMPTY_DAY = TRAFFIC_START + timedelta(days=TRAFFIC_DAYS + 1)
BROKEN_DAY = TRAFFIC_START + timedelta(days=TRAFFIC_DAYS + 2)


def _utc(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _check(day, **params) -> dict[str, str]:
    """drift_monitor for the window [day, day + 1); remembers the run's decision for _decision(day)."""
    conf = {"min_rows": 100, **params}
    # a manual run's data interval is the schedule interval that ends at its logical date
    states = run_dag("drift_monitor", logical_date=_utc(day + timedelta(days=1)), run_conf=conf)
    _RUN_IDS[day] = run_dag.last_run_id
    return states


_RUN_IDS: dict = {}


def _drift_runs() -> list:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            (run.run_id, str(run.state), run.conf)
            for run in session.query(DagRun).filter(DagRun.dag_id == "ml_training", DagRun.run_id.like("drift__%"))
        ]


def _decision(day) -> dict | None:
    return xcom_value("drift_monitor", _RUN_IDS[day], "trigger_retraining", "decision")


@pytest.fixture(scope="module")
def served_traffic(local_profile):
    settings, spec = local_profile
    states = run_dag(
        "ml_training",
        run_conf={
            "epochs": 4,
            "training_window_days": DAYS,
            "training_window_end": LAST_DAY.isoformat(),
            "gate_min": 0.7,
            "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
            "reason": "first champion",
        },
    )
    assert states["deploy"] == "success", states

    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate

    simulate(
        settings,
        spec,
        settings.serving_url,
        TRAFFIC_START,
        TRAFFIC_DAYS,
        300,
        drift=DriftConfig(kind="covariate", start=DRIFT_FROM, strength=1.0),
    )
    return settings, spec


def test_undrifted_window_reports_no_drift_and_triggers_nothing(served_traffic):
    settings, _ = served_traffic
    states = _check(TRAFFIC_START)
    assert states == {"check_drift": "success", "trigger_retraining": "skipped"}, states
    decision = _decision(TRAFFIC_START)
    assert decision["outcome"] == "no_drift", decision
    report = Path(settings.reports) / "drift" / TRAFFIC_START.isoformat()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["drift_share"] < 0.3 and (report / "report.html").stat().st_size > 10_000
    assert _drift_runs() == []


def test_first_drifted_window_triggers_one_retraining_with_its_evidence(served_traffic):
    states = _check(DRIFT_FROM)
    assert states == {"check_drift": "success", "trigger_retraining": "success"}, states
    runs = _drift_runs()
    assert len(runs) == 1
    run_id, state, conf = runs[0]
    assert run_id == f"drift__{DRIFT_FROM.isoformat()}" and state == "queued"
    # the retraining window ends with the drifted day, and the conf carries why
    assert conf["training_window_end"] == DRIFT_FROM.isoformat()
    assert conf["drift"]["drift_share"] >= 0.3 and "drift" in conf["reason"]


def test_drift_while_training_is_queued_does_not_trigger_again(served_traffic):
    states = _check(DRIFT_FROM + timedelta(days=1))
    assert states["trigger_retraining"] == "skipped"
    decision = _decision(DRIFT_FROM + timedelta(days=1))
    assert decision["outcome"] == "skipped" and "already" in decision["reason"], decision
    assert len(_drift_runs()) == 1


def test_retried_trigger_and_cooldown_create_no_second_run(served_traffic):
    finish_retraining_runs()
    # the same window again (a retry or a cleared task): its run exists, nothing new
    _check(DRIFT_FROM)
    # the next window, within the cooldown of the one that fired
    states = _check(DRIFT_FROM + timedelta(days=1))
    assert states["trigger_retraining"] == "skipped"
    assert "cooldown" in _decision(DRIFT_FROM + timedelta(days=1))["reason"]
    assert len(_drift_runs()) == 1


def test_persisting_a_window_twice_keeps_one_result(served_traffic):
    import mlflow

    from include import tracking

    settings, _ = served_traffic
    tracking.configure(settings)
    experiment = mlflow.get_experiment_by_name("drift_monitoring")
    runs = mlflow.search_runs(
        [experiment.experiment_id], filter_string=f"tags.window_start LIKE '{DRIFT_FROM.isoformat()}%'"
    )
    assert len(runs) == 1, "re-running a window must replace its results, not add a second run"


def test_empty_window_is_skipped_as_insufficient_data(served_traffic):
    states = _check(EMPTY_DAY)
    assert states["check_drift"] == "skipped" and states["trigger_retraining"] == "skipped", states
    assert len(_drift_runs()) == 1


def test_window_with_a_retyped_column_fails_clearly(served_traffic):
    settings, spec = served_traffic
    from include.monitoring.inference_log import read_window

    rows = read_window(settings.inference_log, _utc(TRAFFIC_START), _utc(TRAFFIC_START + timedelta(days=1)))
    broken = rows.drop(columns=["label"]).assign(
        timestamp=rows["timestamp"] + pd.Timedelta(days=(BROKEN_DAY - TRAFFIC_START).days),
        tenure_months=rows["tenure_months"].astype(str) + " months",
    )
    folder = Path(settings.inference_log) / "predictions" / f"date={BROKEN_DAY.isoformat()}"
    folder.mkdir(parents=True)
    broken.to_parquet(folder / "broken.parquet", index=False)
    states = _check(BROKEN_DAY)
    assert states["check_drift"] == "failed" and states["trigger_retraining"] == "upstream_failed", states
    assert len(_drift_runs()) == 1
