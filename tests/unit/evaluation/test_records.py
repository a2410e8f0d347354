"""The evaluation and drift records: their JSON round trip, and the key a malformed one names."""

from __future__ import annotations

import copy
import json
import math

import pytest

from include.evaluation.gate import decide
from include.evaluation.records import UNSET, Evaluation, Latency, ModelScores
from include.monitoring.records import ColumnDrift, DriftMetrics, ReportSample

LATENCY = {
    "p50": 1.5,
    "p95": 3.0,
    "wall_p50": 1.7,
    "wall_p95": 3.4,
    "requests": 50,
    "rows_per_request": 1,
    "method": "p95 of per-call CPU time",
}


def _scores(roc_auc):
    return {"roc_auc": roc_auc, "pr_auc": 0.6, "log_loss": 0.45, "rows": 500}


def evaluation(champion=True):
    result = {
        "task": "binary",
        "metric": "roc_auc",
        "higher_is_better": True,
        "baseline": 0.5,
        "slice_feature": "plan",
        "holdout_rows": 500,
        "challenger": {
            "uri": "runs:/c/model",
            "overall": _scores(0.81),
            "slices": {"basic": _scores(0.8), "premium": _scores(None)},
            "latency_ms": dict(LATENCY),
            "latency_budget_ms": 50.0,
            "within_latency_budget": True,
        },
        "champion": {"uri": "models:/m/1", "overall": _scores(0.80), "slices": {"basic": _scores(0.79)}}
        if champion
        else None,
    }
    return result


def drift_metrics():
    column = {
        "drift_score": 0.02,
        "method": "wasserstein",
        "threshold": 0.1,
        "drifted": False,
        "rows": 1000,
        "judged_by": "calibrated",
    }
    return {
        "rows": 1000,
        "labelled_rows": 400,
        "drift_share": 0.5,
        "drifted_columns": ["plan"],
        "columns": {
            "tenure": column,
            "plan": {
                "drift_score": 0.3,
                "method": "jensenshannon",
                "threshold": 0.1,
                "drifted": True,
                "rows": 1000,
                "judged_by": "fixed",
            },
        },
        "prediction_column": "probability",
        "prediction_drift": dict(column),
        "metric": "roc_auc",
        "score": 0.78,
        "reference_score": 0.82,
        "performance_drop": 0.04,
        "performance_note": "measured on 400 rows",
        "champion_version": "3",
        "reference_data": {"path": "churn.parquet", "md5": "abc", "rev": "r1"},
        "reference_rows": 5000,
        "reference_window_days": 183,
        "drift_share_threshold": 0.3,
        "performance_drop_threshold": 0.05,
        "report_sample": {
            "sampled": False,
            "seed": 7,
            "current_rows": 1000,
            "current_rows_total": 1000,
            "reference_rows": 5000,
            "reference_rows_total": 5000,
        },
        "estimated_roc_auc": 0.81,
        "estimated_roc_auc_band": [0.78, 0.84],
        "reference_roc_auc": 0.86,
        "estimated_drop": 0.05,
        "estimated_drop_threshold": None,
    }


@pytest.mark.parametrize("champion", [True, False])
def test_evaluation_round_trips_through_json(champion):
    data = evaluation(champion)

    record = Evaluation.from_dict(json.loads(json.dumps(data)))

    assert record.to_dict() == data
    assert json.dumps(record.to_dict()) == json.dumps(data)  # same keys in the same order
    assert record.challenger.latency_ms == Latency(**LATENCY)
    assert (record.champion is None) is not champion and record.champion_version is UNSET


def test_champion_version_is_kept_when_given_even_as_null():
    for version in ("4", None):
        data = {**evaluation(), "champion_version": version}
        record = Evaluation.from_dict(data)
        assert record.champion_version == version and record.to_dict() == data
    assert "champion_version" not in Evaluation.from_dict(evaluation()).to_dict()


def test_to_dict_hands_out_copies():
    record = Evaluation.from_dict(evaluation())
    record.to_dict()["challenger"]["overall"]["roc_auc"] = 0.0

    assert record.challenger.overall["roc_auc"] == 0.81


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda e: e.pop("metric"), "evaluation is missing 'metric'"),
        (lambda e: e.pop("champion"), "evaluation is missing 'champion'"),
        (lambda e: e["challenger"].pop("latency_ms"), "challenger is missing 'latency_ms'"),
        (lambda e: e["challenger"]["latency_ms"].pop("p95"), "challenger.latency_ms is missing 'p95'"),
        (
            lambda e: e["challenger"]["overall"].update(roc_auc=math.nan),
            r"challenger.overall.roc_auc must be a finite number or null, got nan",
        ),
        (
            lambda e: e["champion"]["slices"]["basic"].update(roc_auc="n/a"),
            r"champion.slices.basic.roc_auc must be a finite number or null, got 'n/a'",
        ),
        (
            lambda e: e["challenger"].update(within_latency_budget="yes"),
            "challenger.within_latency_budget must be true or false",
        ),
        (lambda e: e.update(holdout_rows=1.5), "evaluation.holdout_rows must be an integer"),
        (lambda e: e.update(champion=[]), "champion must be a mapping, got list"),
    ],
)
def test_evaluation_from_dict_names_the_missing_or_bad_key(corrupt, message):
    data = evaluation()
    corrupt(data)

    with pytest.raises(ValueError, match=message):
        Evaluation.from_dict(data)


def test_from_partial_keeps_what_is_there_and_never_raises():
    data = evaluation()
    data["challenger"]["overall"]["roc_auc"] = "n/a"
    del data["champion"]
    del data["challenger"]["slices"]

    record = Evaluation.from_partial(data)

    assert record.challenger.overall["roc_auc"] == "n/a" and record.challenger.slices is None
    assert record.champion is UNSET and record.champion_version is UNSET
    empty = Evaluation.from_partial(None)
    assert empty.challenger == ModelScores(None, {}, None) and empty.champion is UNSET


def test_a_complete_evaluation_and_its_partial_reading_gate_the_same():
    data = evaluation()

    assert decide(data, 0.75, 0.01) == decide(Evaluation.from_dict(data), 0.75, 0.01)
    assert decide(data, 0.75, 0.01).passed


def test_drift_metrics_round_trip_through_json_with_extra_keys_ignored():
    data = drift_metrics()
    envelope = {"status": "ok", **data, "report_html": "/r/report.html", "mlflow_run_id": "abc"}

    record = DriftMetrics.from_dict(json.loads(json.dumps(envelope)))

    assert record.to_dict() == data
    assert json.dumps(record.to_dict()) == json.dumps(data)
    assert (
        record.columns["plan"] == ColumnDrift("plan", "jensenshannon", 0.1, 0.3, 1000)
        and record.columns["plan"].drifted
    )
    assert record.prediction_drift.column == "probability"
    assert record.report_sample == ReportSample(False, 7, 1000, 1000, 5000, 5000)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda m: m.pop("drift_share"), "drift metrics is missing 'drift_share'"),
        (lambda m: m.update(drift_share=math.nan), "drift metrics.drift_share must be a finite number, got nan"),
        (lambda m: m.update(drift_share=1.5), "drift_share must be within 0..1"),
        (lambda m: m["columns"]["tenure"].pop("method"), "columns.tenure is missing 'method'"),
        (
            lambda m: m["columns"]["tenure"].update(drifted=True),
            "columns.tenure.drifted is True, but drift_score 0.02 < threshold 0.1",
        ),
        (lambda m: m.update(drifted_columns=["income"]), "names column.s. not in columns: income"),
        (lambda m: m["prediction_drift"].update(drift_score=math.inf), "prediction_drift.drift_score must be a finite"),
        (lambda m: m.update(performance_drop="0.1"), "performance_drop must be a finite number or null"),
        (lambda m: m["reference_data"].pop("md5"), "drift metrics.reference_data is missing 'md5'"),
        (lambda m: m["report_sample"].update(seed=None), "report_sample.seed must be an integer"),
    ],
)
def test_drift_metrics_from_dict_names_the_missing_or_bad_key(corrupt, message):
    data = copy.deepcopy(drift_metrics())
    corrupt(data)

    with pytest.raises(ValueError, match=message):
        DriftMetrics.from_dict(data)


def test_drift_metrics_from_partial_keeps_what_is_there():
    partial = DriftMetrics.from_partial({"drift_share": "n/a", "columns": {"a": {}}, "drifted_columns": ["a"]})

    assert partial.drift_share == "n/a" and partial.columns == {"a": {}} and partial.drifted_columns == ["a"]
    assert partial.performance_drop is None and DriftMetrics.from_partial(None).columns == {}
