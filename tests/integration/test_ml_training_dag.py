"""ml_training end to end on the local profile, on small data.

The DAG runs with ``dag.test()`` against a private Airflow DB, MLflow store, DVC
registry and model server; every task runs its real code (GX, the training
subprocess, MLflow, the serving process).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.conftest import DAYS, FAST_TRAINING, FIRST_DAY, LAST_DAY, ROOT, run_dag

pytestmark = pytest.mark.integration

FAST = FAST_TRAINING


def _run(conf: dict) -> dict[str, str]:
    """Run ml_training once; the state of each task."""
    return run_dag("ml_training", run_conf={**FAST, **conf})


def _champion(settings) -> str | None:
    from include import registry, tracking

    tracking.configure(settings)
    return registry.alias_version(settings.model_name, registry.CHAMPION)


def _training_runs(settings) -> int:
    import mlflow

    from include import tracking

    tracking.configure(settings)
    experiment = mlflow.get_experiment_by_name(tracking.TRAINING_EXPERIMENT)
    return 0 if experiment is None else len(mlflow.search_runs([experiment.experiment_id]))


def test_first_run_trains_gates_registers_and_deploys_a_champion(local_profile):
    settings, spec = local_profile
    states = _run({"reason": "integration test"})
    assert states == {
        **{
            task: "success"
            for task in ("snapshot", "validate", "train", "evaluate", "gate", "register", "approval_required", "deploy")
        },
        "approve_deploy": "skipped",
    }, states  # no approval asked for by default

    from include import registry

    champion = _champion(settings)
    assert champion == "1"
    tags = registry.version_tags(settings.model_name, champion)
    # lineage: the exact data version, its validation, the code and the Airflow run
    for key in (
        "data.md5",
        "data.rev",
        "data.path",
        "validation.success",
        "code.git_commit",
        "airflow.dag_id",
        "airflow.run_id",
        "params.model_type",
        "gate.passed",
    ):
        assert tags.get(key), f"lineage tag {key} missing: {tags}"
    assert tags["gate.passed"] == "true" and tags["validation.success"] == "true"
    assert tags["params.reason"] == "integration test"
    assert registry.alias_version(settings.model_name, registry.CHALLENGER) == champion
    # deploying stored the champion's monitoring profile, which the nightly drift check reads
    from include.monitoring.profile import PROFILE_FORMAT, PROFILE_TAG

    assert tags.get(PROFILE_TAG) == PROFILE_FORMAT

    # the exact training bytes come back from the lineage tags alone
    from include.data.versioning import DataRegistry, DatasetRef

    ref = DatasetRef(
        repo=tags["data.repo"],
        path=tags["data.path"],
        md5=tags["data.md5"],
        rev=tags["data.rev"],
        rows=int(tags["data.rows"]),
        window_start=FIRST_DAY.isoformat(),
        window_end=(LAST_DAY + timedelta(days=1)).isoformat(),
    )
    assert len(DataRegistry(ref.repo, settings.dvc_remote).load(ref)) == DAYS * 250

    # the champion is served on 127.0.0.1 and answers real requests
    health = requests.get(f"{settings.serving_url}/health", timeout=10).json()
    assert health["model_version"] == champion
    rows = pd.read_parquet(next(Path(spec.location).glob("date=*/part-0.parquet")))[spec.feature_names].head(3)
    answer = requests.post(
        f"{settings.serving_url}/invocations",
        json={"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
        timeout=10,
    ).json()
    assert len(answer["predictions"]) == 3


def test_worse_challenger_is_rejected_and_nothing_is_promoted(local_profile):
    settings, _ = local_profile
    champion_before = _champion(settings)
    assert champion_before is not None, "runs after the first test"
    # a barely trained model: the floor is lowered so that only the comparison can reject it
    states = _run(
        {"epochs": 1, "learning_rate": 1e-6, "gate_min": 0.5, "max_regression": 0.0, "reason": "worse challenger"}
    )
    assert states["gate"] == "success"
    assert states["register"] == "skipped" and states["deploy"] == "skipped", states
    assert _champion(settings) == champion_before
    health = requests.get(f"{settings.serving_url}/health", timeout=10).json()
    assert health["model_version"] == champion_before


@pytest.mark.parametrize("corruption", ["nulls_in_required_column", "out_of_range_value", "missing_column"])
def test_bad_batch_fails_validation_and_never_trains(local_profile, corruption):
    settings, spec = local_profile
    bad_day = LAST_DAY + timedelta(days=1)
    from include.simulation.generate import generate_day

    frame = generate_day(spec, bad_day, 250, seed=7)
    if corruption == "nulls_in_required_column":
        frame.loc[frame.sample(frac=0.2, random_state=1).index, "tenure_months"] = None
    elif corruption == "out_of_range_value":
        frame.loc[0, "monthly_charges"] = 10_000.0
    else:
        frame = frame.drop(columns=["contract"])
    partition = Path(spec.location) / f"date={bad_day.isoformat()}"
    partition.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(partition / "part-0.parquet", index=False)
    runs_before = _training_runs(settings)
    champion_before = _champion(settings)
    try:
        states = _run({"training_window_end": bad_day.isoformat(), "reason": f"bad batch: {corruption}"})
    finally:
        (partition / "part-0.parquet").unlink()
        partition.rmdir()
    assert states["snapshot"] == "success"
    assert states["validate"] == "failed"
    assert states["train"] in ("upstream_failed", "None"), states
    assert _training_runs(settings) == runs_before, "training started on a batch that failed validation"
    assert _champion(settings) == champion_before
