"""Case 6: two training runs pass their gates against the same champion and deploy at once.

The registry is MLflow on a real multi-process backend (PostgreSQL, started for the
suite), so two writers really interleave; the promotion lock is then a PostgreSQL
advisory lock in that database.

Fault: champion C; challengers A (better than C) and B (better than both) each passed
its gate against C; two separate processes run the deploy step for A and B at the same moment.
Expected: promotions take turns; whichever comes second finds the other's champion and is
re-gated against it: B replaces A, A never replaces B (refused, with the numbers).
State checked: ``champion`` is B; ``previous_champion`` is the version B replaced, and every
promoted version's ``previous_champion_version`` tag names the champion it replaced (no lost
update); the served version is B. A late run gated against C is refused as well.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.reliability.conftest import ROOT, free_port, xcom

pytestmark = pytest.mark.reliability

MIN_ROC_AUC, MAX_REGRESSION, LATENCY_BUDGET_MS = 0.5, 0.02, TEST_LATENCY_BUDGET_MS
NOISE = {"C": 4.0, "A": 1.5, "B": 0.0}

RACER = r"""
import json, sys, time
from pathlib import Path

from include import pipeline, registry, tracking
from include.data.spec import load_spec
from include.settings import Settings
import include.deployment.local, include.evaluation.evaluate, include.evaluation.gate  # noqa: F401

ready, go, version, data_ref = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
settings = Settings.from_env()
spec = load_spec(settings.dataset_spec)
tracking.configure(settings)
registry.alias_version(settings.model_name, registry.CHAMPION)  # connected before the start line
ready.touch()
while not go.exists():
    time.sleep(0.005)
try:
    outcome = pipeline.deploy(settings, spec, data_ref, version)
    print("RESULT " + json.dumps({"promoted": True, "previous_champion": outcome["previous_champion"]}))
except pipeline.PromotionRefused as refused:
    print("RESULT " + json.dumps({"promoted": False, "refused": str(refused)}))
"""


@pytest.fixture(scope="module")
def pg_registry(stack, champion_run, postgres, tmp_path_factory):
    from include import pipeline, tracking
    from include.data.split import holdout_split
    from include.deployment.local import LocalServingDeployer
    from include.settings import Settings

    home = tmp_path_factory.mktemp("pg-registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", postgres.url("mlflow"))
        patch.setenv("MLOPS_SERVING_PORT", str(free_port()))
        patch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
        settings = Settings.from_env()
        assert settings.promotion_lock == postgres.url("mlflow")
        tracking.configure(settings)
        data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
        _, holdout = holdout_split(pipeline.load_snapshot(settings, data_ref), stack.spec)
        try:
            yield settings, data_ref, holdout
        finally:
            LocalServingDeployer(settings).stop()
            tracking.configure(stack.settings)


def _challenger(settings, spec, data_ref, holdout, noise: float, champion_uri=None, champion_version=None):
    """Log a model, evaluate it against the champion (or the given one), gate and register it."""
    from include import pipeline
    from include.evaluation.evaluate import evaluate as score
    from include.tracking import TRAINING_EXPERIMENT, ensure_experiment
    from include.training.model import as_model_input
    from tests.reliability.fault_models import BlurredChurnModel, log_model

    run_id, model_uri = log_model(
        BlurredChurnModel(noise),
        as_model_input(holdout.head(5), spec),
        ensure_experiment(settings, TRAINING_EXPERIMENT),
    )
    training = {"run_id": run_id, "model_uri": model_uri}
    if champion_uri is None:
        evaluation = pipeline.evaluate(settings, spec, data_ref, training, latency_budget_ms=LATENCY_BUDGET_MS)
    else:  # a gate that ran while ``champion_version`` was still the champion
        evaluation = score(model_uri, champion_uri, holdout, spec, latency_budget_ms=LATENCY_BUDGET_MS)
        evaluation["champion_version"] = champion_version
    decision = pipeline.gate(settings, evaluation, training, minimum=MIN_ROC_AUC, max_regression=MAX_REGRESSION)
    assert decision["passed"], decision["reason"]
    version = pipeline.register(
        settings,
        training,
        data_ref,
        {"success": True, "successful": 1, "evaluated": 1},
        decision,
        {"dag_id": "ml_training", "run_id": f"noise-{noise}", "params": {}},
        spec=spec,
    )
    return version, evaluation


def _race(settings, data_ref, versions: list[str], tmp_path) -> list[dict]:
    racers = []
    for version in versions:
        ready, go = tmp_path / f"ready-{version}", tmp_path / "go"
        racers.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", RACER, str(ready), str(go), version, json.dumps(data_ref)],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    try:
        deadline = time.monotonic() + 300
        while not all(ready.exists() for ready, _ in racers):
            assert all(process.poll() is None for _, process in racers), [p.communicate() for _, p in racers]
            assert time.monotonic() < deadline, "the racing processes never got ready"
            time.sleep(0.05)
        (tmp_path / "go").touch()
        results = []
        for _, process in racers:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, err[-4000:]
            results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
        return results
    finally:
        for _, process in racers:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_concurrent_promotions_end_consistent(stack, pg_registry, tmp_path):
    from include import pipeline, registry
    from include.deployment.local import LocalServingDeployer

    settings, data_ref, holdout = pg_registry
    name = settings.model_name
    champion_c, _ = _challenger(settings, stack.spec, data_ref, holdout, NOISE["C"])
    pipeline.deploy(settings, stack.spec, data_ref, champion_c)
    assert registry.alias_version(name, registry.CHAMPION) == champion_c
    version_a, evaluation_a = _challenger(settings, stack.spec, data_ref, holdout, NOISE["A"])
    version_b, evaluation_b = _challenger(settings, stack.spec, data_ref, holdout, NOISE["B"])
    auc = {
        label: evaluation["challenger"]["overall"]["roc_auc"]
        for label, evaluation in (("A", evaluation_a), ("B", evaluation_b))
    }
    assert auc["B"] - auc["A"] > 2 * MAX_REGRESSION, f"the models are too close to tell apart: {auc}"
    for version in (version_a, version_b):
        assert registry.version_tags(name, version)[pipeline.GATED_AGAINST_TAG] == champion_c

    results = dict(
        zip((version_a, version_b), _race(settings, data_ref, [version_a, version_b], tmp_path), strict=False)
    )

    assert results[version_b]["promoted"], results
    assert registry.alias_version(name, registry.CHAMPION) == version_b
    tags_b = registry.version_tags(name, version_b)
    if results[version_a]["promoted"]:
        # A went first (against C, its gate's champion); B then re-gated against A and replaced it
        assert results[version_a]["previous_champion"] == champion_c
        assert registry.version_tags(name, version_a)["previous_champion_version"] == champion_c
        assert results[version_b]["previous_champion"] == version_a
        assert tags_b["promotion.regated_against"] == version_a and tags_b["promotion.regate_passed"] == "true"
    else:
        # B went first; A, re-gated against B, was refused with the numbers
        assert f"version {version_b} became champion since" in results[version_a]["refused"]
        assert "regressed" in results[version_a]["refused"]
        assert registry.version_tags(name, version_a)["promotion.regate_passed"] == "false"
        assert results[version_b]["previous_champion"] == champion_c
    assert registry.alias_version(name, registry.PREVIOUS_CHAMPION) == results[version_b]["previous_champion"]
    assert tags_b["previous_champion_version"] == results[version_b]["previous_champion"]
    served = LocalServingDeployer(settings).status()
    assert served is not None and served.running and served.version == version_b


def test_a_run_gated_against_a_replaced_champion_is_refused(stack, pg_registry):
    from include import pipeline, registry
    from include.deployment.local import LocalServingDeployer

    settings, data_ref, holdout = pg_registry
    name = settings.model_name
    champion = registry.alias_version(name, registry.CHAMPION)
    previous = registry.alias_version(name, registry.PREVIOUS_CHAMPION)
    first = "1"  # C, the first champion of this registry
    assert champion not in (None, first), "runs after the race"
    # its gate compared it with C, which it beats; the champion it would replace now is better
    late, _ = _challenger(
        settings,
        stack.spec,
        data_ref,
        holdout,
        (NOISE["A"] + NOISE["C"]) / 2,
        champion_uri=registry.model_uri(name, first),
        champion_version=first,
    )

    with pytest.raises(pipeline.PromotionRefused, match=f"version {champion} became champion since"):
        pipeline.deploy(settings, stack.spec, data_ref, late)

    assert registry.alias_version(name, registry.CHAMPION) == champion
    assert registry.alias_version(name, registry.PREVIOUS_CHAMPION) == previous
    assert LocalServingDeployer(settings).status().version == champion
