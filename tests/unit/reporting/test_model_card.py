"""The model card of a registered version: its schema, its numbers against the version's tags, and its unknowns."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta

import jsonschema
import mlflow
import pytest

from include.reporting.drift_history import drift_history
from include.reporting.model_card import (
    CARD_FOLDER,
    CARD_JSON,
    CARD_MARKDOWN,
    CARD_TAG,
    SCHEMA_PATH,
    UNKNOWN,
    build_card,
    refresh_model_card,
)
from include.reporting.model_card_markdown import render_markdown
from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.unit.churn_frame import make_frame

WINDOW_START = date(2024, 3, 1)
WINDOW_DAYS = 30


def _validate(card: dict) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(card)


def _card_artifacts(run_id: str) -> tuple[dict, str]:
    card = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CARD_FOLDER}/{CARD_JSON}")
    markdown = mlflow.artifacts.load_text(f"runs:/{run_id}/{CARD_FOLDER}/{CARD_MARKDOWN}")
    return card, markdown


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Settings for a private local profile shared by this module's tests, and its dataset spec."""
    from include import tracking
    from include.data.spec import load_spec
    from include.settings import Settings

    home = tmp_path_factory.mktemp("model-card") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        patch.setenv("MLOPS_PROFILE", "local")
        settings = Settings.from_env()
        tracking.configure(settings)
        yield settings, load_spec(settings.dataset_spec)


@pytest.fixture(scope="module")
def registered(store):
    """A version registered by the pipeline's evaluate, gate and register steps, on a DVC snapshot."""
    from include import pipeline, tracking
    from include.data.versioning import DataRegistry
    from include.training.train import TrainingConfig, train_and_log

    mlops_env, spec = store
    tracking.configure(mlops_env)
    frame = make_frame(spec, 1500, seed=3)
    data_registry = DataRegistry(mlops_env.data_registry, mlops_env.dvc_remote)
    data_ref = data_registry.snapshot(
        frame, spec.name, WINDOW_START, WINDOW_START + timedelta(days=WINDOW_DAYS)
    ).to_dict()
    config = TrainingConfig("sklearn_hgb", epochs=2, learning_rate=0.1, batch_size=256)
    training = train_and_log(pipeline.load_snapshot(mlops_env, data_ref), spec, config, mlops_env, {}).to_xcom()
    evaluation = pipeline.evaluate(mlops_env, spec, data_ref, training, latency_budget_ms=TEST_LATENCY_BUDGET_MS)
    metric, minimum, max_regression = pipeline.gate_thresholds(spec)
    decision = pipeline.gate(mlops_env, evaluation, training, minimum, max_regression, metric=metric)
    assert decision["passed"], decision["reason"]
    version = pipeline.register(
        mlops_env,
        training,
        data_ref,
        {"success": True, "successful": 7, "evaluated": 7},
        decision,
        {"dag_id": "ml_training", "run_id": "card-test", "params": {}},
        spec=spec,
    )
    return version, training, data_ref, evaluation


def test_the_registered_versions_card_validates_and_its_numbers_are_the_versions_tags(store, registered):
    from include import registry, tracking

    mlops_env, spec = store
    tracking.configure(mlops_env)
    version, training, data_ref, evaluation = registered
    tags = registry.version_tags(mlops_env.model_name, version)
    card, markdown = _card_artifacts(training["run_id"])

    _validate(card)
    assert tags[CARD_TAG] == f"{CARD_FOLDER}/{CARD_MARKDOWN}"
    assert card["model"]["version"] == version and card["model"]["run_id"] == training["run_id"]
    assert card["model"]["model_type"] == "sklearn_hgb"
    assert card["intended_use"]["description"] == " ".join(spec.description.split())
    assert card["intended_use"]["description"] != UNKNOWN

    data = dict(card["training_data"])
    assert data["md5"] == tags["data.md5"] == data_ref["md5"]
    assert data["rev"] == tags["data.rev"] and data["path"] == tags["data.path"]
    assert data["rows"] == int(tags["data.rows"]) == 1500
    assert f"{data['window_start']}..{data['window_end']}" == tags["data.window"] == "2024-03-01..2024-03-31"
    assert data["validation"] == {"success": True, "expectations": "7/7"}

    gate = card["gate"]
    assert gate["passed"] is True and gate["first_model"] is True
    assert gate["metric"] == tags["gate.metric"] == "roc_auc"
    for name, key in [
        ("challenger_score", "gate.challenger_score"),
        ("minimum", "gate.min"),
        ("max_regression", "gate.max_regression"),
        ("latency_budget_ms", "gate.latency_budget_ms"),
        ("latency_p95_ms", "gate.latency_p95_ms"),
    ]:
        assert gate[name] == float(tags[key]), name
    assert (gate["minimum"], gate["max_regression"]) == (spec.gate.min, spec.gate.max_regression)
    # the first model: there is no champion, which is not the same as not knowing it
    assert gate["champion_score"] == "none" and card["evaluation"]["champion"] == "none"
    floor = next(check for check in gate["checks"] if check["name"] == "min_roc_auc")
    assert (floor["value"], floor["threshold"], floor["passed"]) == (gate["challenger_score"], spec.gate.min, True)
    assert {check["name"] for check in gate["checks"]} == {"min_roc_auc", "latency"}

    assert card["evaluation"]["overall"]["roc_auc"] == evaluation["challenger"]["overall"]["roc_auc"]
    assert card["evaluation"]["overall"]["roc_auc"] == gate["challenger_score"]
    assert set(card["evaluation"]["slices"]) == {"basic", "standard", "premium"}
    for value, scores in evaluation["challenger"]["slices"].items():
        assert card["evaluation"]["slices"][value]["roc_auc"] == scores["roc_auc"]

    importance = card["feature_importance"]
    assert importance["status"] == "computed" and importance["scorer"] == "roc_auc"
    assert {row["feature"] for row in importance["features"]} == set(spec.feature_names)
    # the unshuffled score is the evaluation's: the same model on the same held-out rows
    assert importance["baseline_score"] == pytest.approx(gate["challenger_score"])
    means = [row["importance_mean"] for row in importance["features"]]
    assert means == sorted(means, reverse=True) and means[0] > 0.01
    # the label follows support calls and tenure most of all
    assert {row["feature"] for row in importance["features"][:3]} & {"support_calls_30d", "tenure_months"}

    assert card["limits"]["drift"]["windows_checked"] == 0
    assert card["limits"]["drift"]["summary"].startswith("none known yet")

    assert markdown == render_markdown(card)
    for heading in ["Intended use", "Training data", "Evaluation", "Gate decision", "Feature importance"]:
        assert f"## {heading}" in markdown
    assert tags["data.md5"] in markdown and "| min_roc_auc |" in markdown
    assert "## Known limits" in markdown and "none known yet" in markdown


def _drift_window(client, experiment_id, model_name, version, day, drift_share, threshold=0.3):
    from include.monitoring.drift_store import WINDOW_START_TAG

    run = client.create_run(
        experiment_id,
        tags={
            WINDOW_START_TAG: f"{day}T00:00:00+00:00",
            "window_end": f"{day + timedelta(days=1)}T00:00:00+00:00",
            "model_name": model_name,
            "champion_version": version,
            "drift_share_threshold": repr(threshold),
            "performance_drop_threshold": repr(0.05),
            "drifted_columns": "tenure_months, plan" if drift_share >= threshold else "none",
        },
    )
    client.log_metric(run.info.run_id, "drift_share", drift_share)
    client.set_terminated(run.info.run_id)


def test_refreshing_the_card_lists_the_drift_windows_that_crossed_the_threshold(store, registered):
    from include import tracking
    from include.monitoring.drift_store import DRIFT_EXPERIMENT

    mlops_env, spec = store
    tracking.configure(mlops_env)
    version, training, *_ = registered
    before, _ = _card_artifacts(training["run_id"])
    client = mlflow.MlflowClient()
    experiment_id = tracking.ensure_experiment(mlops_env, DRIFT_EXPERIMENT)
    name = mlops_env.model_name
    _drift_window(client, experiment_id, name, version, date(2024, 4, 2), 0.6)
    _drift_window(client, experiment_id, name, version, date(2024, 4, 1), 0.1)
    _drift_window(client, experiment_id, name, "99", date(2024, 4, 3), 0.9)  # another version's window

    refreshed = refresh_model_card(mlops_env, spec, version)

    stored, markdown = _card_artifacts(training["run_id"])
    assert stored == refreshed
    _validate(stored)
    drift = stored["limits"]["drift"]
    assert (drift["windows_checked"], drift["windows_unjudged"]) == (2, 0)
    [window] = drift["windows_over_threshold"]
    assert window["window_start"].startswith("2024-04-02")
    assert (window["drift_share"], window["drift_share_threshold"]) == (0.6, 0.3)
    assert window["reasons"] == ["drift share 0.60 >= threshold 0.30"]
    assert drift["summary"].startswith("1 of 2 window(s)")
    # everything else is the card written at registration
    assert {key: value for key, value in stored.items() if key != "limits"} == {
        key: value for key, value in before.items() if key != "limits"
    }
    assert "2024-04-02" in markdown and "tenure_months, plan" in markdown


def test_what_the_stores_do_not_hold_is_unknown_never_guessed(spec):
    card = build_card(model={"name": "churn", "version": "4"}, tags={})

    _validate(card)
    assert card["intended_use"]["description"] == UNKNOWN
    assert card["model"]["run_id"] == card["model"]["code_git_commit"] == UNKNOWN
    data = dict(card["training_data"])
    assert data.pop("validation") == {"success": UNKNOWN, "expectations": UNKNOWN}
    assert set(data.values()) == {UNKNOWN}
    assert card["evaluation"] == UNKNOWN
    gate = card["gate"]
    assert gate["passed"] == gate["metric"] == gate["challenger_score"] == gate["minimum"] == UNKNOWN
    assert gate["checks"] == []
    assert card["feature_importance"]["status"] == UNKNOWN
    assert card["limits"]["drift"]["status"] == UNKNOWN
    assert "unknown" in render_markdown(card)

    # a spec without a description: the intended use is unknown, the rest of the spec is known
    undescribed = build_card(model={}, tags={"gate.min": "none"}, spec=replace(spec, description="  "))
    _validate(undescribed)
    assert undescribed["intended_use"]["description"] == UNKNOWN
    assert undescribed["intended_use"]["task"] == "binary"
    assert undescribed["gate"]["minimum"] == "none"


def test_a_version_never_champion_has_no_drift_history_and_a_missing_experiment_is_no_error(mlops_env):
    from include import tracking

    tracking.configure(mlops_env)
    history = drift_history(mlflow.MlflowClient(), mlops_env.model_name, "1")
    assert history == {"status": "known", "windows_checked": 0, "windows_unjudged": 0, "windows_over_threshold": []}


def test_a_version_without_a_card_gets_one_on_refresh_with_its_missing_lineage_unknown(store, registered):
    from include import registry, tracking

    mlops_env, spec = store
    tracking.configure(mlops_env)
    _, training, *_ = registered
    # the same run registered again by hand, without the pipeline's tags or card step
    bare = str(mlflow.register_model(training["model_uri"], mlops_env.model_name).version)

    card = refresh_model_card(mlops_env, spec, bare)

    _validate(card)
    assert card["model"]["version"] == bare
    assert card["training_data"]["md5"] == card["gate"]["metric"] == UNKNOWN
    assert card["feature_importance"]["status"] == UNKNOWN
    assert "lineage" in card["feature_importance"]["reason"]
    assert registry.version_tags(mlops_env.model_name, bare)[CARD_TAG] == f"{CARD_FOLDER}/{CARD_MARKDOWN}"
