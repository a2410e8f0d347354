"""The drift check: real Evidently reports on generated traffic, a real champion's lineage, real MLflow runs.

The served model here is a real fitted :class:`TabularClassifier` (gradient
boosting, seconds to fit); windows are days drawn by the demo generator with a
different seed from the reference days, with or without injected drift, scored
by that model the way the server scores requests.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from include.data.spec import load_spec
from include.data.split import holdout_split
from include.monitoring.drift import (
    DRIFT_EXPERIMENT,
    DriftInputError,
    DriftReferenceError,
    DriftRunNotFound,
    Reference,
    check_window,
    persist_results,
    record_decision,
    reference_for_champion,
    run_drift_check,
)
from include.settings import PROJECT_ROOT
from include.simulation.champion import fit_champion, served_window
from include.simulation.generate import DriftConfig, generate_day, generate_days
from include.training.model import TabularClassifier, as_model_input
from include.training.preprocessing import TabularPreprocessor

REFERENCE_START = date(2024, 1, 1)
WINDOW_START = date(2024, 3, 1)
REFERENCE_SEED, WINDOW_SEED = 7, 99
THRESHOLDS = {"drift_share_threshold": 0.3, "performance_drop_threshold": 0.05}


@pytest.fixture(scope="module")
def demo_spec():
    return load_spec(PROJECT_ROOT / "include/datasets/customer_churn.yaml")


@pytest.fixture(scope="module")
def champion(demo_spec):
    """A fitted model and the Reference of the 8 days it learned from (8000 training rows)."""
    snapshot = generate_days(demo_spec, REFERENCE_START, 8, 1250, REFERENCE_SEED)
    data_ref = {
        "repo": "/registry",
        "path": "snapshots/customer_churn/x.parquet",
        "md5": "0" * 32,
        "rev": "a" * 40,
        "rows": len(snapshot),
        "window_start": "2024-01-01",
        "window_end": "2024-01-09",
    }
    return fit_champion(demo_spec, snapshot, model_version="3", data_ref=data_ref)


def served(
    spec, model, days: int, rows_per_day: int, *, drift: DriftConfig | None = None, labelled: int | None = None
) -> pd.DataFrame:
    """A window as the inference log returns it; the first ``labelled`` rows carry their label (all if None)."""
    customers = generate_days(spec, WINDOW_START, days, rows_per_day, WINDOW_SEED, drift)
    return served_window(spec, model, customers, labelled=labelled, model_version="3")


def _check(window, reference, spec, html_path):
    return run_drift_check(window, reference, spec, html_path=html_path, **THRESHOLDS)


@pytest.fixture(scope="module")
def undrifted(demo_spec, champion, tmp_path_factory):
    model, reference = champion
    html = tmp_path_factory.mktemp("undrifted") / "report.html"
    return _check(served(demo_spec, model, 4, 1250), reference, demo_spec, html), html


@pytest.fixture(scope="module")
def covariate(demo_spec, champion, tmp_path_factory):
    model, reference = champion
    window = served(demo_spec, model, 4, 1250, drift=DriftConfig("covariate", REFERENCE_START, 1.0))
    html = tmp_path_factory.mktemp("covariate") / "report.html"
    return _check(window, reference, demo_spec, html), html


# ---------------------------------------------------------------------------------------- verdicts
def test_undrifted_window_shows_no_drift_and_the_champions_own_performance(demo_spec, champion, undrifted):
    metrics, html = undrifted
    _, reference = champion

    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    assert metrics["rows"] == metrics["labelled_rows"] == 5000
    assert metrics["drift_share"] == 0.0 and metrics["drifted_columns"] == []
    assert list(metrics["columns"]) == demo_spec.feature_names
    for name, column in metrics["columns"].items():
        expected = "wasserstein" if demo_spec.feature(name).is_numeric else "jensenshannon"
        assert column["method"] == expected and column["drifted"] is False
        assert 0 <= column["drift_score"] < 0.05, name
    assert metrics["prediction_drift"]["drifted"] is False
    assert metrics["prediction_drift"]["method"] == "wasserstein"
    assert abs(metrics["performance_drop"]) < 0.03
    assert metrics["reference_score"] == reference.holdout_score
    assert metrics["performance_drop"] == pytest.approx(reference.holdout_score - metrics["score"])
    assert metrics["champion_version"] == "3"
    assert metrics["reference_data"] == {"path": "snapshots/customer_churn/x.parquet", "md5": "0" * 32, "rev": "a" * 40}
    page = html.read_text()
    assert page.lstrip().startswith("<!DOCTYPE html>") and "Drift share 0.00" in page
    assert "Classification performance on the labelled rows" in page
    assert not list(html.parent.glob(".*.tmp")), "the temporary file must be replaced into place"


def test_covariate_drift_lists_the_shifted_columns(covariate):
    metrics, html = covariate

    assert metrics["drift_share"] > 0.3
    # the generator shifts charges, usage, logins, support calls, devices and the plan mix; never region
    # or payment method
    assert {"monthly_charges", "support_calls_30d", "usage_hours_30d", "plan"} <= set(metrics["drifted_columns"])
    assert not {"region", "payment_method"} & set(metrics["drifted_columns"])
    assert metrics["drift_share"] == len(metrics["drifted_columns"]) / 10
    for name in metrics["drifted_columns"]:
        assert metrics["columns"][name]["drift_score"] >= metrics["columns"][name]["threshold"]
    assert metrics["prediction_drift"]["drifted"] is True
    assert f"Drift share {metrics['drift_share']:.2f}" in html.read_text()


def test_a_large_undrifted_window_raises_no_false_alarm_even_against_a_small_reference(demo_spec, champion, tmp_path):
    model, reference = champion
    window = served(demo_spec, model, 3, 10_000)

    metrics = _check(window, reference, demo_spec, tmp_path / "large.html")

    assert metrics["rows"] == 30_000
    assert metrics["drift_share"] == 0.0
    assert max(column["drift_score"] for column in metrics["columns"].values()) < 0.05
    # Evidently's defaults switch to chi-square / K-S p-values at <= 1000 reference rows, which flag
    # every categorical column of a large window; the pinned distances must not
    small = Reference(
        frame=reference.frame.head(800),
        model_version="3",
        data_ref=reference.data_ref,
        holdout_score=reference.holdout_score,
    )
    against_small = _check(window, small, demo_spec, tmp_path / "small-reference.html")
    assert against_small["drift_share"] < 0.3, against_small["drifted_columns"]


def test_the_result_is_the_drift_metrics_record_as_json(undrifted, covariate):
    from include.monitoring.records import DriftMetrics

    for metrics, _ in (undrifted, covariate):
        record = DriftMetrics.from_dict(json.loads(json.dumps(metrics)))
        assert record.to_dict() == metrics
        assert record.drifted_columns == [name for name, column in record.columns.items() if column.drifted]


def test_concept_drift_shows_as_a_performance_drop_not_as_data_drift(demo_spec, champion, tmp_path):
    model, reference = champion
    window = served(demo_spec, model, 2, 1500, drift=DriftConfig("concept", REFERENCE_START, 1.0))

    metrics = _check(window, reference, demo_spec, tmp_path / "concept.html")

    assert metrics["drift_share"] < 0.3
    assert metrics["performance_drop"] > 0.05
    labelled = window["label"].notna()
    expected = roc_auc_score(window.loc[labelled, "label"].astype(int), window.loc[labelled, "probability"])
    assert metrics["score"] == pytest.approx(expected)


def test_too_few_or_one_class_labels_leave_performance_unmeasured(demo_spec, champion, tmp_path):
    model, reference = champion
    window = served(demo_spec, model, 1, 1000, labelled=30)

    metrics = _check(window, reference, demo_spec, tmp_path / "few.html")

    assert metrics["labelled_rows"] == 30
    assert metrics["score"] is None and metrics["performance_drop"] is None
    assert "30 labelled row(s)" in metrics["performance_note"]
    assert "30 labelled row(s)" in (tmp_path / "few.html").read_text()

    one_class = served(demo_spec, model, 1, 1000, labelled=200).assign(
        label=lambda frame: frame["label"].where(frame["label"].isna(), 0).astype("Int64")
    )
    metrics = _check(one_class, reference, demo_spec, tmp_path / "one-class.html")
    assert metrics["score"] is None and "both classes" in metrics["performance_note"]

    unlabelled = served(demo_spec, model, 1, 1000).drop(columns=["label"])
    assert _check(unlabelled, reference, demo_spec, tmp_path / "none.html")["labelled_rows"] == 0


# ---------------------------------------------------------------------------------------- bad windows
def test_empty_or_small_windows_are_insufficient_data_never_a_verdict(demo_spec, champion):
    model, _ = champion
    window = served(demo_spec, model, 1, 200)
    empty_log = pd.DataFrame(
        {
            column: pd.Series(dtype=object)
            for column in (
                "request_id",
                "timestamp",
                "model_name",
                "model_version",
                "probability",
                "prediction",
                "label",
            )
        }
    )

    for empty in (window.head(0), empty_log):
        result = check_window(empty, demo_spec, min_rows=100)
        assert (result.status, result.rows) == ("insufficient_data", 0)
        assert "no served prediction" in result.reason
    small = check_window(window.head(40), demo_spec, min_rows=100)
    assert (small.status, small.rows) == ("insufficient_data", 40)
    assert "40" in small.reason and "min_rows=100" in small.reason
    # a few rows that all lack one value are too few to call that column broken
    assert check_window(window.head(3).assign(tenure_months=np.nan), demo_spec, 100).status == "insufficient_data"
    assert check_window(window, demo_spec, min_rows=100).status == "ok"
    with pytest.raises(ValueError, match="min_rows"):
        check_window(window, demo_spec, min_rows=0)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda frame: frame.drop(columns=["usage_hours_30d"]), r"missing column\(s\) 'usage_hours_30d'"),
        (lambda frame: frame.drop(columns=["probability"]), r"missing column\(s\) 'probability'"),
        (
            lambda frame: frame.assign(monthly_charges=frame["monthly_charges"].astype(str)),
            r"numeric feature 'monthly_charges' should be numeric but arrived as object \(values like '",
        ),
        (
            lambda frame: frame.assign(plan=np.arange(len(frame)) % 3),
            r"categorical feature 'plan' should hold strings but arrived as int64",
        ),
        (lambda frame: frame.assign(num_devices=True), r"numeric feature 'num_devices' .* booleans"),
        (
            lambda frame: frame.assign(support_calls_30d=np.nan),
            r"column 'support_calls_30d' is empty: all 200 values are missing; expected numeric values",
        ),
        (lambda frame: frame.assign(region=None), r"column 'region' is empty: .*expected categorical values"),
        (
            lambda frame: frame.assign(probability=frame["probability"] * 100),
            r"'probability' should hold probabilities",
        ),
        (
            lambda frame: frame.assign(label=pd.array([2] * len(frame), dtype="Int64")),
            r"label.*outside the declared classes",
        ),
    ],
)
def test_schema_broken_windows_are_clear_errors_naming_the_column(demo_spec, champion, tmp_path, breakage, message):
    model, reference = champion
    broken = breakage(served(demo_spec, model, 1, 200))

    with pytest.raises(DriftInputError, match=message):
        check_window(broken, demo_spec, min_rows=100)
    # the report refuses it too, whoever calls it
    with pytest.raises(DriftInputError, match=message):
        _check(broken, reference, demo_spec, tmp_path / "broken.html")
    assert not (tmp_path / "broken.html").exists()


def test_numbers_in_an_object_column_are_numbers_not_a_retyped_column(demo_spec, champion):
    model, _ = champion
    window = served(demo_spec, model, 1, 200)
    window["num_devices"] = window["num_devices"].astype(object)
    window.loc[0, "num_devices"] = None

    assert check_window(window, demo_spec, min_rows=100).status == "ok"


# ---------------------------------------------------------------------------------------- reference
def _register_champion(settings, spec):
    """Snapshot 4 generated days in a real DVC registry, train on them, register with lineage tags, promote."""
    from include import registry, tracking
    from include.data.versioning import DataRegistry
    from include.training.train import TrainingConfig, train_and_log

    tracking.configure(settings)
    snapshot = generate_days(spec, REFERENCE_START, 4, 500, REFERENCE_SEED)
    data_registry = DataRegistry(settings.data_registry, settings.dvc_remote)
    ref = data_registry.snapshot(snapshot, spec.name, REFERENCE_START, REFERENCE_START + timedelta(days=4))
    trained = train_and_log(
        snapshot, spec, TrainingConfig("sklearn_hgb", epochs=2, learning_rate=0.1, batch_size=256), settings, {}
    )
    # the lineage tags exactly as include.pipeline.register writes them
    lineage = {
        "data.repo": ref.repo,
        "data.path": ref.path,
        "data.md5": ref.md5,
        "data.rev": ref.rev,
        "data.rows": ref.rows,
        "data.window": f"{ref.window_start}..{ref.window_end}",
    }
    version = registry.register_challenger(settings.model_name, trained.model_uri, trained.run_id, lineage)
    registry.promote_champion(settings.model_name, version)
    return version, snapshot, ref, trained


def test_reference_is_read_through_the_registered_champions_lineage(mlops_env, spec):
    from include import registry, tracking

    tracking.configure(mlops_env)
    with pytest.raises(DriftReferenceError, match="no 'champion' alias"):
        reference_for_champion(mlops_env, spec)
    version, snapshot, ref, trained = _register_champion(mlops_env, spec)

    reference = reference_for_champion(mlops_env, spec)

    train, holdout = holdout_split(snapshot, spec)
    assert reference.model_version == version
    assert reference.data_ref == ref.to_dict()
    assert len(reference.frame) == len(train) == 1600
    assert list(reference.frame.columns) == [*spec.feature_names, "probability", "label"]
    served_model = mlflow.pyfunc.load_model(registry.model_uri(mlops_env.model_name, version))
    assert np.allclose(reference.frame["probability"], served_model.predict(as_model_input(train, spec))["probability"])
    assert (reference.frame["label"].to_numpy() == train[spec.target].to_numpy()).all()
    holdout_probability = served_model.predict(as_model_input(holdout, spec))["probability"]
    assert reference.holdout_score == pytest.approx(roc_auc_score(holdout[spec.target], holdout_probability))

    # a champion whose lineage tags are gone cannot lead back to its data: said so, by tag
    bare = str(mlflow.register_model(trained.model_uri, mlops_env.model_name).version)
    registry.promote_champion(mlops_env.model_name, bare)
    with pytest.raises(DriftReferenceError, match=f"version {bare} lacks lineage tag.*data.repo.*data.window"):
        reference_for_champion(mlops_env, spec)


def _log_served_day(settings, spec, model, version, day: date, rows: int, *, plan_as_numbers: bool = False):
    """Serve one generated day through the model into the real inference log, then land every label."""
    from include.monitoring.inference_log import InferenceLogWriter, write_labels

    customers = generate_day(spec, day, rows, WINDOW_SEED)
    features = as_model_input(customers, spec)
    output = model.predict(features)
    if plan_as_numbers:
        features["plan"] = np.arange(rows) % 3
    request_ids = [f"{day}-{index}" for index in range(rows)]
    writer = InferenceLogWriter(settings.inference_log, settings.model_name)
    writer.append(
        features,
        output["probability"].to_numpy(),
        output["prediction"].to_numpy(),
        version,
        request_ids,
        customers[spec.timestamp_column],
    )
    writer.close()
    assert writer.rows_written == rows
    write_labels(
        settings.inference_log,
        pd.DataFrame(
            {
                "request_id": request_ids,
                "label": customers[spec.target].to_numpy(),
                "label_timestamp": pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=20),
            }
        ),
        day=day,
    )


def test_check_drift_runs_the_whole_step_from_the_inference_log(mlops_env, spec):
    from include import registry
    from include.monitoring.drift import check_drift

    version, *_ = _register_champion(mlops_env, spec)
    model = mlflow.pyfunc.load_model(registry.model_uri(mlops_env.model_name, version))
    _log_served_day(mlops_env, spec, model, version, WINDOW_START, 600)
    _log_served_day(mlops_env, spec, model, version, WINDOW_START + timedelta(days=1), 300, plan_as_numbers=True)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    options = {"min_rows": 100, **THRESHOLDS}

    result = check_drift(mlops_env, spec, start, start + timedelta(days=1), **options)

    assert result["status"] == "ok"
    assert (result["rows"], result["labelled_rows"]) == (600, 600)
    assert result["drift_share"] < 0.3 and result["score"] > 0.7
    assert result["champion_version"] == version
    assert Path(result["report_html"]).is_file() and Path(result["metrics_json"]).is_file()
    assert json.loads(Path(result["metrics_json"]).read_text())["drift_share"] == result["drift_share"]
    assert [run.info.run_id for run in _window_runs(mlops_env, start.isoformat())] == [result["mlflow_run_id"]]
    assert json.loads(json.dumps(result, allow_nan=False)) == result

    # a day nobody was served: insufficient data, and nothing written for it
    empty = check_drift(mlops_env, spec, start + timedelta(days=4), start + timedelta(days=5), **options)
    assert empty == {"status": "insufficient_data", "rows": 0, "reason": "the window holds no served prediction"}
    assert not (Path(mlops_env.reports) / "drift" / "2024-03-05").exists()
    # a day whose categorical feature arrived as numbers fails, naming it
    with pytest.raises(DriftInputError, match="categorical feature 'plan' should hold strings"):
        check_drift(mlops_env, spec, start + timedelta(days=1), start + timedelta(days=2), **options)


# ---------------------------------------------------------------------------------------- persistence
def _window_runs(settings, window_start: str):
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    return [run for run in runs if run.data.tags.get("window_start") == window_start]


def test_persisting_a_window_twice_replaces_its_report_and_keeps_one_run(mlops_env, undrifted, covariate):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=1)
    first_metrics, first_html = covariate
    second_metrics, second_html = undrifted
    # the second attempt has no labels: its ROC AUC must not linger from the first
    second_metrics = {**second_metrics, "score": None, "performance_drop": None}

    first = persist_results(mlops_env, start, end, first_metrics, first_html)
    record_decision(mlops_env, start, {"retrain": True, "outcome": "retrain", "reason": "drift share 0.60"})
    # the same window again, given in another timezone: it is the same window
    second = persist_results(
        mlops_env, start.astimezone(timezone(timedelta(hours=2))), end, second_metrics, second_html
    )

    folder = Path(mlops_env.reports) / "drift" / "2024-03-01"
    assert second == {
        "report_html": str(folder / "report.html"),
        "metrics_json": str(folder / "metrics.json"),
        "mlflow_run_id": first["mlflow_run_id"],
    }
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.json", "report.html"]
    stored = json.loads((folder / "metrics.json").read_text())
    assert stored == {
        "window_start": "2024-03-01T00:00:00+00:00",
        "window_end": "2024-03-02T00:00:00+00:00",
        **second_metrics,
    }
    assert (folder / "report.html").read_bytes() == second_html.read_bytes()

    runs = _window_runs(mlops_env, "2024-03-01T00:00:00+00:00")
    assert [run.info.run_id for run in runs] == [first["mlflow_run_id"]]
    data = runs[0].data
    assert data.metrics["drift_share"] == 0.0
    assert data.metrics["drift_score.plan"] == pytest.approx(second_metrics["columns"]["plan"]["drift_score"])
    assert data.metrics["prediction_drift_score"] == pytest.approx(second_metrics["prediction_drift"]["drift_score"])
    assert data.metrics["rows"] == 5000
    assert math.isnan(data.metrics["roc_auc"]) and math.isnan(data.metrics["performance_drop"])
    assert data.tags["champion_version"] == "3" and data.tags["drifted_columns"] == "none"
    assert data.tags["drift_method.tenure_months"] == "wasserstein"
    artifacts = sorted(item.path for item in mlflow.MlflowClient().list_artifacts(first["mlflow_run_id"]))
    assert artifacts == ["metrics.json", "report.html"]
    logged = mlflow.artifacts.load_dict(f"runs:/{first['mlflow_run_id']}/metrics.json")
    assert logged == stored

    run_id = record_decision(
        mlops_env, start, {"retrain": False, "outcome": "no_drift", "reason": "drift share 0.00 < threshold 0.30"}
    )
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    assert (tags["decision"], tags["retrain_triggered"]) == ("no_drift", "false")
    assert tags["decision.reason"] == "drift share 0.00 < threshold 0.30"


def test_a_decision_needs_the_windows_run(mlops_env):
    with pytest.raises(DriftRunNotFound, match="2024-05-01T00:00:00"):
        record_decision(mlops_env, datetime(2024, 5, 1), {"retrain": False, "outcome": "no_drift", "reason": "x"})
