"""The bootstrap's vectorised metrics equal scikit-learn's, and its intervals cover what they should."""

from __future__ import annotations

import numpy as np
import pytest

from include.evaluation.metrics import score
from include.rollout import bootstrap


def _rows(task: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if task == "binary":
        labels = rng.integers(0, 2, n)
        p = np.clip(0.5 + 0.3 * (2 * labels - 1) + rng.normal(0, 0.25, n), 0.001, 0.999)
        return labels, {"probability": np.round(p, 2), "prediction": (p > 0.5).astype(int)}, ()
    if task == "multiclass":
        classes = ("a", "b", "c")
        labels = rng.choice(classes, n).astype(object)
        noisy = np.where(rng.random(n) < 0.7, labels, rng.choice(classes, n)).astype(object)
        matrix = rng.dirichlet([1, 1, 1], n)
        outputs = {"prediction": noisy, **{f"probability_{c}": matrix[:, i] for i, c in enumerate(classes)}}
        return labels, outputs, classes
    labels = rng.normal(10, 3, n)
    return labels, {"prediction": labels + rng.normal(0, 1, n)}, ()


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("binary", "roc_auc"),
        ("binary", "pr_auc"),
        ("binary", "log_loss"),
        ("multiclass", "macro_f1"),
        ("multiclass", "log_loss"),
        ("regression", "rmse"),
        ("regression", "mae"),
        ("regression", "r2"),
    ],
)
def test_a_resample_of_every_row_once_gives_scikit_learns_value(task, metric):
    labels, outputs, classes = _rows(task, 800)
    parts = bootstrap._parts(task, metric, bootstrap.Scored(labels, outputs), classes)
    cells = bootstrap._cells(parts.discrete, parts.continuous, parts.values)
    assert cells.bins is None, "800 rows stay exact"
    ours = bootstrap._weighted(metric, cells.counts[None, :], cells, "", len(classes))[0]
    assert ours == pytest.approx(score(task, labels, outputs, classes)[metric], rel=1e-9, abs=1e-12)


def test_a_paired_interval_of_a_model_against_itself_is_zero():
    labels, outputs, _ = _rows("binary", 500)
    overall, _ = bootstrap.paired("binary", "roc_auc", bootstrap.Scored(labels, outputs), outputs)
    assert overall.difference == 0 and overall.low == 0 and overall.high == 0


def test_large_samples_are_binned_and_keep_the_exact_difference_at_the_centre():
    labels, outputs, _ = _rows("binary", 50_000)
    rng = np.random.default_rng(5)
    better = {
        "probability": np.clip(outputs["probability"] + 0.1 * (2 * labels - 1) + rng.normal(0, 0.05, len(labels)), 0, 1)
    }
    overall, _ = bootstrap.paired("binary", "roc_auc", bootstrap.Scored(labels, outputs), better)
    exact = score("binary", labels, better)["roc_auc"] - score("binary", labels, outputs)["roc_auc"]
    assert overall.difference == pytest.approx(exact)
    assert overall.low < exact < overall.high and overall.high - overall.low < 0.01


def test_the_two_sample_interval_covers_no_difference_between_equal_models():
    labels, outputs, _ = _rows("binary", 4000, seed=1)
    half = len(labels) // 2
    first = bootstrap.Scored(labels[:half], {k: v[:half] for k, v in outputs.items()})
    second = bootstrap.Scored(labels[half:], {k: v[half:] for k, v in outputs.items()})
    overall, _ = bootstrap.two_sample("binary", "roc_auc", first, second)
    assert overall.low < 0 < overall.high
