"""Training: real torch / scikit-learn fits logged to a real MLflow store under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest

from include.data.split import holdout_split
from include.settings import PROJECT_ROOT
from include.tracking import TRAINING_EXPERIMENT
from include.training.model import MODEL_TYPES, ModelError, as_model_input
from include.training.train import TrainingConfig, TrainingError, train_and_log, write_xcom
from tests.unit.churn_frame import make_frame

LEARNING_RATES = {"torch_mlp": 0.01, "sklearn_hgb": 0.1}
VALID_REF = json.dumps(
    {
        "repo": "/tmp/repo",
        "path": "data/churn.parquet",
        "md5": "0" * 32,
        "rev": "abc",
        "rows": 10,
        "window_start": "2024-03-01",
        "window_end": "2024-03-02",
    }
)


def _config(model_type: str, epochs: int = 3) -> TrainingConfig:
    return TrainingConfig(
        model_type=model_type, epochs=epochs, learning_rate=LEARNING_RATES[model_type], batch_size=128, seed=7
    )


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_train_and_log_records_the_run_and_a_model_that_loads_back(model_type, mlops_env, spec, monkeypatch):
    monkeypatch.setenv("MLOPS_GIT_COMMIT", "0123abcd")
    frame = make_frame(spec, 1500, seed=11)
    tags = {"airflow.dag_id": "train_model", "data.md5": "f" * 32}

    result = train_and_log(frame, spec, _config(model_type), mlops_env, tags)

    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == TRAINING_EXPERIMENT
    assert run.data.params["model_type"] == model_type
    assert run.data.params["epochs"] == "3"
    assert run.data.params["batch_size"] == "128"
    assert run.data.params["rows"] == "1500"
    assert run.data.params["train_rows"] == "1200" and run.data.params["holdout_rows"] == "300"
    assert run.data.tags["airflow.dag_id"] == "train_model"
    assert run.data.tags["data.md5"] == "f" * 32
    assert run.data.tags["code.git_commit"] == "0123abcd"
    assert run.data.tags["device"] == result.device
    assert result.device == "cpu" or result.device.startswith("cuda:")
    losses = client.get_metric_history(result.run_id, "train_loss")
    assert [metric.step for metric in losses] == [1, 2, 3]
    assert losses[-1].value < losses[0].value
    assert len(client.get_metric_history(result.run_id, "epoch_seconds")) == 3
    assert result.train_metric == "roc_auc"
    assert run.data.metrics["train_roc_auc"] == pytest.approx(result.train_score)
    assert result.train_score > 0.75
    # training logs a model but registers nothing: that is the gate's decision
    assert result.model_uri.startswith("models:/m-")
    assert client.search_registered_models() == []

    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature.inputs.input_names() == spec.feature_names
    input_types = dict(zip(info.signature.inputs.input_names(), info.signature.inputs.input_types(), strict=True))
    assert all(input_types[name].name == "double" for name in spec.numeric_features)
    assert all(input_types[name].name == "string" for name in spec.categorical_features)
    assert info.signature.outputs.input_names() == ["probability", "prediction"]
    assert info.saved_input_example_info is not None

    loaded = mlflow.pyfunc.load_model(result.model_uri)
    assert list(loaded.input_example.columns) == spec.feature_names
    _, holdout = holdout_split(frame, spec)
    features = as_model_input(holdout, spec)
    served = loaded.predict(features)
    assert list(served.columns) == ["probability", "prediction"]
    assert served["probability"].dtype == np.float64 and served["prediction"].dtype == np.int64
    assert served["probability"].between(0, 1).all()
    assert (served["prediction"] == (served["probability"] >= 0.5)).all()
    np.testing.assert_allclose(
        served["probability"], result.model.predict(None, features)["probability"], rtol=1e-6, atol=1e-7
    )

    # preprocessing statistics come from the train part only: the held-out rows must not leak in
    train, _ = holdout_split(frame, spec)
    stats = loaded.unwrap_python_model().preprocessor.numeric_stats
    assert stats["tenure_months"].mean == pytest.approx(train["tenure_months"].mean())
    assert stats["tenure_months"].mean != pytest.approx(frame["tenure_months"].mean())

    unseen = features.head(3).assign(plan="enterprise", region=None)
    answer = loaded.predict(unseen)
    assert len(answer) == 3 and answer["probability"].between(0, 1).all()


def test_logged_model_loads_in_a_fresh_process_from_its_own_files(mlops_env, spec, tmp_path):
    frame = make_frame(spec, 600, seed=5)
    result = train_and_log(frame, spec, _config("torch_mlp", epochs=1), mlops_env, {})
    model_dir = mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "model"))
    rows = as_model_input(frame.head(4), spec)
    expected = result.model.predict(None, rows)["probability"].tolist()
    script = textwrap.dedent(f"""
        import json, sys
        import mlflow.pyfunc, pandas as pd
        model = mlflow.pyfunc.load_model({model_dir!r})
        import include
        rows = pd.DataFrame(json.loads({rows.to_json(orient="records")!r}))
        print(json.dumps({{"include": include.__file__,
                           "probability": model.predict(rows)["probability"].tolist()}}))
    """)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    # the code came from the model's own copy of the package, not from the checkout
    assert answer["include"].startswith(str(model_dir))
    np.testing.assert_allclose(answer["probability"], expected, rtol=1e-6)


def test_failed_training_ends_the_run_failed(mlops_env, spec):
    frame = make_frame(spec, 200, seed=2).assign(churned=0)

    with pytest.raises(ModelError, match="all 0"):
        train_and_log(frame, spec, _config("torch_mlp"), mlops_env, {"airflow.run_id": "manual__1"})

    experiment = mlflow.get_experiment_by_name(TRAINING_EXPERIMENT)
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert [run.info.status for run in runs] == ["FAILED"]
    assert runs[0].data.tags["airflow.run_id"] == "manual__1"


def test_frame_without_a_spec_column_is_rejected_before_any_run(mlops_env, spec):
    frame = make_frame(spec, 200, seed=2).drop(columns=["contract"])

    with pytest.raises(TrainingError, match="missing column.*contract"):
        train_and_log(frame, spec, _config("sklearn_hgb"), mlops_env, {})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model_type": "xgboost"}, "model_type must be one of"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_training_config_rejects_bad_values(values, message):
    arguments = {"model_type": "torch_mlp", "epochs": 2, "learning_rate": 0.01, "batch_size": 32, **values}

    with pytest.raises(TrainingError, match=message):
        TrainingConfig(**arguments)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model-type", "xgboost"], "argument --model-type: invalid choice: 'xgboost'"),
        (["--epochs", "0"], "argument --epochs: must be >= 1"),
        (["--epochs", "two"], "argument --epochs: expected an integer"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a finite number > 0"),
        (["--learning-rate", "-0.5"], "argument --learning-rate: must be a finite number > 0"),
        (["--batch-size", "-1"], "argument --batch-size: must be >= 1"),
        (["--data-ref", "{not json"], "argument --data-ref: not valid JSON"),
        (["--data-ref", "[1, 2]"], "argument --data-ref: expected a JSON object"),
        (["--tag", "no-equals-sign"], "argument --tag: expected key=value"),
        (["--tag", "bad#key=1"], "argument --tag: tag key 'bad#key' may only hold"),
        (["--seed", "-3"], "argument --seed: must be >= 0"),
    ],
)
def test_command_line_rejects_bad_arguments_with_exit_code_2(arguments, message, tmp_path):
    xcom = tmp_path / "xcom" / "return.json"
    base = {
        "--data-ref": VALID_REF,
        "--model-type": "torch_mlp",
        "--epochs": "2",
        "--learning-rate": "0.01",
        "--xcom-path": str(xcom),
    }
    base.update(dict(zip(arguments[::2], arguments[1::2], strict=True)))
    argv = [item for pair in base.items() for item in pair]

    completed = subprocess.run(
        [sys.executable, "-m", "include.training.train", *argv],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert message in completed.stderr
    assert not xcom.exists()


def test_command_line_requires_a_data_ref():
    completed = subprocess.run(
        [sys.executable, "-m", "include.training.train", "--model-type", "torch_mlp"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert "the following arguments are required: --data-ref" in completed.stderr


def test_write_xcom_replaces_the_file_whole(tmp_path):
    target = tmp_path / "airflow" / "xcom" / "return.json"
    write_xcom(target, {"run_id": "old"})

    write_xcom(target, {"run_id": "r1", "model_uri": "models:/m-1", "device": "cpu"})

    assert json.loads(target.read_text()) == {"run_id": "r1", "model_uri": "models:/m-1", "device": "cpu"}
    assert [path.name for path in target.parent.iterdir()] == ["return.json"]


def test_predict_needs_a_fitted_model_and_all_features(spec):
    from include.training.model import TabularClassifier

    with pytest.raises(ModelError, match="not fitted"):
        TabularClassifier("torch_mlp").predict(None, pd.DataFrame({"plan": ["basic"]}))
    with pytest.raises(ModelError, match="unknown model type 'xgboost'"):
        TabularClassifier("xgboost")
    with pytest.raises(ModelError, match="missing required feature column.*tenure_months"):
        as_model_input(pd.DataFrame({"plan": ["basic"]}), spec)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_rows_prediction_does_not_depend_on_the_batch_it_is_predicted_in(model_type, spec):
    # the server predicts concurrent requests together and must answer each as if alone
    from include.training.model import TabularClassifier
    from include.training.preprocessing import TabularPreprocessor

    train = make_frame(spec, 800, seed=2)
    model = TabularClassifier(model_type).fit(
        train[spec.feature_names],
        train[spec.target],
        TabularPreprocessor.from_spec(spec),
        epochs=2,
        learning_rate=LEARNING_RATES[model_type],
        batch_size=128,
    )
    rows = as_model_input(make_frame(spec, 300, seed=4), spec)

    alone = np.concatenate([model.predict_proba(rows.iloc[[index]]) for index in range(len(rows))])

    for size in (2, 7, 32, 300):
        together = np.concatenate(
            [model.predict_proba(rows.iloc[start : start + size]) for start in range(0, len(rows), size)]
        )
        np.testing.assert_array_equal(together, alone, err_msg=f"batches of {size}")
    columns = {name: rows[name].to_numpy() for name in rows.columns}
    probabilities, labels = model.predict_with_labels(columns)
    np.testing.assert_array_equal(probabilities, alone)
    np.testing.assert_array_equal(labels, (alone >= 0.5).astype(np.int64))
