"""The demo data in four real-world storage types goes all the way to a served champion.

A user's export once failed at ``deploy``: whole-number features stored as int64
passed every step, then the smoke test scored raw columns and MLflow refused
"Can not safely convert int64 to float64"; a pandas ``category`` column failed the
same way. Every path now goes through the one cast (:mod:`include.data.cast`).

Per variant (see :mod:`tests.integration.dtype_variants`): write a spec and the
export, land it with the ingest command, profile a suite with the suite command,
then run the pipeline steps in process (snapshot, validate, train, evaluate, gate,
register, deploy) on a private local profile, and send the served champion a
request in the variant's raw JSON types.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import date, timedelta

import numpy as np
import pytest
import requests

from scripts.local_stack import free_port
from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.dtype_variants import (
    VARIANTS,
    check_dtypes,
    check_export,
    payload,
    request_rows,
    write_export,
)

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 3, 1)
DAYS = 12
ROWS_PER_DAY = 150


def _forget_mlflow_uris() -> None:
    """MLflow keeps the URIs set by tracking.configure in module globals: later tests read their env again."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None


@pytest.fixture
def variant_settings(request, tmp_path, monkeypatch):
    """A private local profile for one variant: its own home, registry, model name and port."""
    from include import tracking
    from include.deployment.local import LocalServingDeployer
    from include.settings import Settings

    variant = request.param
    name = "churn_" + variant.replace("-", "_")
    home = tmp_path / "home"
    export = write_export(variant, tmp_path, name, FIRST_DAY, DAYS, ROWS_PER_DAY)
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_PROFILE", "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLOPS_MODEL_NAME", name)
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_DATASET_SPEC", str(export.spec_path))
    settings = Settings.from_env()
    tracking.configure(settings)
    try:
        yield variant, settings, export
    finally:
        try:
            LocalServingDeployer(settings).stop()
        finally:
            _forget_mlflow_uris()


@pytest.mark.parametrize("variant_settings", VARIANTS, indirect=True)
def test_variant_is_landed_trained_deployed_and_served(variant_settings):
    import mlflow

    from include import pipeline, registry
    from include.data import ingest
    from include.data.cast import model_input
    from include.data.partitions import partition_dates
    from include.data.spec import load_spec
    from include.training.train import TrainingConfig, train_and_log
    from include.validation import suite as suite_command

    variant, settings, export = variant_settings
    check_dtypes(variant, export.frame)
    check_export(export)

    # land the export with the ingest command
    assert ingest.main(["--spec", str(export.spec_path), str(export.export_dir)]) == 0
    spec = load_spec(export.spec_path)
    assert partition_dates(spec) == list(export.days)

    # profile the landed data into the spec's suite with the suite command
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert suite_command.main(["--spec", str(export.spec_path), "--profile"]) == 0
    spec.expectation_suite.parent.mkdir(parents=True, exist_ok=True)
    spec.expectation_suite.write_text(stdout.getvalue())
    json.loads(stdout.getvalue())  # the command printed one JSON document

    # the pipeline's steps, in process
    data_ref = pipeline.snapshot(settings, spec, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS))
    assert data_ref["rows"] == DAYS * ROWS_PER_DAY
    validation = pipeline.validate(settings, spec, data_ref)
    assert validation["success"], validation

    config = TrainingConfig("sklearn_hgb", epochs=3, learning_rate=0.1, batch_size=256)
    tags = {"data.md5": data_ref["md5"], "airflow.dag_id": "test", "dtype_variant": variant}
    trained = train_and_log(pipeline.load_snapshot(settings, data_ref), spec, config, settings, tags)
    training = trained.to_xcom()

    evaluation = pipeline.evaluate(settings, spec, data_ref, training, latency_budget_ms=TEST_LATENCY_BUDGET_MS)
    metric, minimum, max_regression = pipeline.gate_thresholds(spec)
    assert (metric, minimum) == ("roc_auc", 0.6)
    decision = pipeline.gate(settings, evaluation, training, minimum, max_regression, metric=metric)
    assert decision["passed"], decision

    run_context = {"dag_id": "test", "run_id": f"dtype-variant-{variant}", "params": {}}
    version = pipeline.register(settings, training, data_ref, validation, decision, run_context, spec=spec)
    outcome = pipeline.deploy(settings, spec, data_ref, version)

    assert outcome["version"] == str(version)
    assert str(registry.alias_version(settings.model_name, registry.CHAMPION)) == str(version)

    # the served champion answers a request in the variant's raw JSON types
    rows = request_rows(variant, export.frame, spec.feature_names)
    body = payload(rows)
    response = requests.post(f"{outcome['url']}/invocations", json=body, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(rows)
    model = mlflow.pyfunc.load_model(registry.model_uri(settings.model_name, version))
    expected = model.predict(model_input(rows, spec))["probability"].to_numpy()
    served = np.array([item["probability"] for item in predictions], dtype=np.float64)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
