"""Case 5: the gate receives an evaluation with a metric missing, or NaN.

Fault: the real evaluation of a real challenger against the real champion, with one number
taken out or turned into NaN (the challenger's ROC AUC or latency, the champion's slices),
handed to the gate step.
Expected: the gate fails closed: a rejection whose reason names the missing or NaN value;
the DAG's short-circuit then skips ``register`` and ``deploy``.
State checked: the challenger's MLflow run is tagged ``gate.passed=false``; no model version
is created and no alias moves.
"""

from __future__ import annotations

import copy
import math

import pytest

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.reliability.conftest import xcom

pytestmark = pytest.mark.reliability


def _drop(evaluation, *path):
    *parents, last = path
    for key in parents:
        evaluation = evaluation[key]
    del evaluation[last]


def _nan(evaluation, *path):
    *parents, last = path
    for key in parents:
        evaluation = evaluation[key]
    evaluation[last] = math.nan


FAULTS = {
    "challenger roc_auc missing": (
        lambda e: _drop(e, "challenger", "overall", "roc_auc"),
        "challenger roc_auc missing",
    ),
    "challenger roc_auc NaN": (lambda e: _nan(e, "challenger", "overall", "roc_auc"), "challenger roc_auc NaN"),
    "latency NaN": (lambda e: _nan(e, "challenger", "latency_ms", "p95"), "latency p95 NaN"),
    "champion roc_auc NaN": (lambda e: _nan(e, "champion", "overall", "roc_auc"), "champion roc_auc NaN"),
    "champion slices missing": (lambda e: _drop(e, "champion", "slices"), "champion slices missing"),
    "champion missing": (lambda e: _drop(e, "champion"), "champion missing from the evaluation"),
}


MIN_ROC_AUC, MAX_REGRESSION = 0.5, 0.5


@pytest.fixture(scope="module")
def real_evaluation(stack, champion_run):
    """A challenger logged to its own run, evaluated against the champion: it passes as it is."""
    from include import pipeline
    from include.data.split import holdout_split
    from include.tracking import TRAINING_EXPERIMENT, ensure_experiment
    from include.training.model import as_model_input
    from tests.reliability.fault_models import BlurredChurnModel, log_model

    data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
    _, holdout = holdout_split(pipeline.load_snapshot(stack.settings, data_ref), stack.spec)
    run_id, model_uri = log_model(
        BlurredChurnModel(noise=0.5),
        as_model_input(holdout.head(5), stack.spec),
        ensure_experiment(stack.settings, TRAINING_EXPERIMENT),
    )
    training = {"run_id": run_id, "model_uri": model_uri}
    evaluation = pipeline.evaluate(
        stack.settings, stack.spec, data_ref, training, latency_budget_ms=TEST_LATENCY_BUDGET_MS
    )
    assert evaluation["champion"] is not None
    untouched = pipeline.gate(stack.settings, evaluation, training, minimum=MIN_ROC_AUC, max_regression=MAX_REGRESSION)
    assert untouched["passed"], untouched["reason"]
    return evaluation, training


@pytest.mark.parametrize("fault", list(FAULTS))
def test_gate_fails_closed(stack, real_evaluation, fault):
    from include import pipeline

    evaluation, training = copy.deepcopy(real_evaluation[0]), real_evaluation[1]
    corrupt, named = FAULTS[fault]
    corrupt(evaluation)
    versions_before, aliases_before = stack.versions(), stack.aliases()

    decision = pipeline.gate(stack.settings, evaluation, training, minimum=MIN_ROC_AUC, max_regression=MAX_REGRESSION)

    assert decision["passed"] is False
    assert decision["reason"].startswith("rejected") and named in decision["reason"], decision["reason"]
    tags = stack.client().get_run(training["run_id"]).data.tags
    assert tags["gate.passed"] == "false" and named in tags["gate.reason"]
    assert stack.versions() == versions_before and stack.aliases() == aliases_before
