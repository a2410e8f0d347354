"""Every DAG parses cleanly, cheaply, and declares what operators rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
ML_MODULES = (
    "torch",
    "sklearn",
    "mlflow",
    "great_expectations",
    "evidently",
    "dvc",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {path.stem for path in DAG_FILES} == set(dagbag.dag_ids), "one DAG per file, file name = dag_id"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_loads_no_ml_library(dag_file):
    # a fresh interpreter, as the dag-processor has: what the file pulls in is what it costs
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted(m for m in {ML_MODULES!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_dags_are_documented_tagged_and_bounded(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip().startswith("## "), f"{dag_id} has no doc_md heading"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id} sets no retries"
        for task in dag.tasks:
            if hasattr(task, "response_timeout"):
                # a human-in-the-loop task waits for a person, bounded by its response timeout
                assert task.response_timeout is not None, f"{dag_id}.{task.task_id} waits forever"
                continue
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"
            assert task.execution_timeout <= timedelta(hours=2)
            assert task.retries is not None


def test_params_are_valid_json_schemas_with_descriptions(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name, param in dag.params.items():
            param = dag.params.get_param(name)
            schema = param.schema
            jsonschema.Draft202012Validator.check_schema(schema)
            assert param.description, f"{dag_id} param {name} has no description"
            assert schema.get("section"), f"{dag_id} param {name} has no section"
        dag.params.validate()  # the defaults themselves are valid


def test_training_params_are_the_documented_set(dagbag):
    params = dagbag.dags["ml_training"].params
    assert {
        "model_type",
        "epochs",
        "learning_rate",
        "batch_size",
        "gpus",
        "training_window_days",
        "training_window_end",
        "gate_metric",
        "gate_min",
        "max_regression",
        "reason",
        "rollout",
        "canary_share",
    } <= set(params.keys())
    assert params.get_param("model_type").schema["enum"] == ["torch_mlp", "sklearn_hgb"]
    assert params.get_param("rollout").schema["enum"] == ["spec", "direct", "shadow", "canary"]
    assert params["rollout"] == "spec", "by default the dataset spec chooses"


def test_the_rollout_dag_runs_hourly_one_at_a_time_and_can_be_forced(dagbag):
    dag = dagbag.dags["ml_rollout"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.params.get_param("force").schema["enum"] == ["none", "promote", "rollback"]
    assert dag.params["force"] == "none"
    assert [task.task_id for task in dag.tasks] == ["decide_and_act"]


@pytest.mark.parametrize(
    "bad",
    [
        {"model_type": "xgboost"},
        {"epochs": 0},
        {"learning_rate": 0},
        {"batch_size": "big"},
        {"gpus": -1},
        {"training_window_days": 0},
        {"training_window_end": "last tuesday"},
        {"gate_metric": "accuracy"},
        {"gate_min": "high"},
        {"max_regression": -0.1},
        {"reason": ""},
        {"rollout": "blue_green"},
        {"canary_share": 0},
        {"canary_share": 1.5},
    ],
)
def test_invalid_training_params_are_refused(dagbag, bad):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dagbag.dags["ml_training"].params)
    name, value = next(iter(bad.items()))
    with pytest.raises(ParamValidationError):
        params[name] = value
        params.validate()


def test_plugin_loader_does_not_import_the_shared_package_as_top_level_modules():
    # Airflow imports every file of the plugins folder under its bare file name; the
    # package the DAGs share must be skipped (.airflowignore) or it shadows other modules
    code = (
        "import sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "import pathlib\n"
        f"names = [p.stem for p in pathlib.Path({str(ROOT / 'plugins' / 'mlops_airflow')!r}).glob('*.py')]\n"
        "print(sorted(n for n in names if n in sys.modules and n != '__init__'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "bad",
    [
        ("drift_share_threshold", 0),
        ("performance_drop_threshold", 0.0),
        ("estimated_drop_threshold", 0),
        ("drift_share_threshold", 1.5),
    ],
)
def test_drift_thresholds_of_zero_are_refused_by_the_form(dagbag, bad):
    """A threshold of 0 would retrain on every window: the form refuses it before any run starts."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dagbag.dags["drift_monitor"].params)
    name, value = bad
    with pytest.raises(ParamValidationError):
        params[name] = value
        params.validate()


def test_the_drift_form_says_which_day_a_run_checks(dagbag):
    doc = " ".join(dagbag.dags["drift_monitor"].doc_md.split())
    assert "logical date *D* checks the day before *D*" in doc
    assert '"logical_date": null' in doc and "the last complete UTC day before it was triggered" in doc
