"""Permutation feature importance of a served model on the held-out rows.

Each feature's importance is how much the gate's metric worsens, in the metric's own
units, when that feature's values are shuffled across the held-out rows
(``sklearn.inspection.permutation_importance``). The model is called the way serving
calls it (the pyfunc's ``predict`` on the cast frame) and scored with the same
metric code as the evaluation (:func:`include.evaluation.metrics.score`), so the
numbers describe the registered model, preprocessing included. The draw is seeded and
the rows and repeats are bounded, so the figures are reproducible and cheap: at most
``max_rows * n_repeats * features`` rows predicted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

N_REPEATS = 5
RANDOM_STATE = 0
MAX_ROWS = 2000
METHOD = "permutation importance on the held-out rows (sklearn.inspection.permutation_importance)"


class _Served:
    """An already trained model in the shape scikit-learn's inspection asks for (it checks for ``fit``)."""

    def __init__(self, model):
        self.model = model

    def fit(self, *args, **kwargs) -> _Served:
        return self

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        return self.model.predict(features)


def _scorer(spec: DatasetSpec, metric: str):
    """A scikit-learn scorer: the metric of the model's output, signed so that larger is better."""
    from include.evaluation.metrics import higher_is_better, score

    sign = 1.0 if higher_is_better(metric) else -1.0

    def scorer(estimator: _Served, features: pd.DataFrame, labels: np.ndarray) -> float:
        output = estimator.predict(features)
        value = score(spec.task, labels, {name: output[name].to_numpy() for name in output.columns}, spec.classes)
        measured = value.get(metric)
        return float("nan") if measured is None else sign * float(measured)

    return scorer


def permutation_feature_importance(
    model,
    holdout: pd.DataFrame,
    spec: DatasetSpec,
    metric: str,
    *,
    n_repeats: int = N_REPEATS,
    random_state: int = RANDOM_STATE,
    max_rows: int = MAX_ROWS,
) -> dict[str, Any]:
    """Permutation importance of each of the spec's features for ``model`` (a loaded pyfunc) on ``holdout``.

    ``holdout`` holds the feature columns and the target; more than ``max_rows`` rows are
    sampled down with ``random_state``. Returns ``method``, ``scorer`` (the metric),
    ``higher_is_better``, ``n_repeats``, ``random_state``, ``rows``, ``baseline_score``
    (the metric on the unshuffled rows) and ``features``: a list of ``{"feature",
    "importance_mean", "importance_std"}`` sorted by importance, largest first, where a
    positive importance means the metric gets worse without the feature. Raises
    ``ValueError`` when the metric is undefined on these rows (e.g. one class only), and the
    model's or the cast's errors.
    """
    from sklearn.inspection import permutation_importance

    from include.data.cast import target_array
    from include.evaluation.metrics import higher_is_better
    from include.training.model import as_model_input

    if len(holdout) > max_rows:
        holdout = holdout.sample(n=max_rows, random_state=random_state)
    holdout = holdout.reset_index(drop=True)
    features = as_model_input(holdout, spec)
    labels = target_array(holdout[spec.target], spec)
    estimator, scorer = _Served(model), _scorer(spec, metric)
    baseline = scorer(estimator, features, labels)
    if not math.isfinite(baseline):
        raise ValueError(f"{metric} is undefined on the {len(holdout)} held-out rows")
    result = permutation_importance(
        estimator, features, labels, scoring=scorer, n_repeats=n_repeats, random_state=random_state, n_jobs=1
    )
    ranked = sorted(
        (
            {
                "feature": str(name),
                "importance_mean": float(mean),
                "importance_std": float(std),
            }
            for name, mean, std in zip(features.columns, result.importances_mean, result.importances_std, strict=True)
        ),
        key=lambda row: -row["importance_mean"],
    )
    sign = 1.0 if higher_is_better(metric) else -1.0
    return {
        "method": METHOD,
        "scorer": metric,
        "higher_is_better": higher_is_better(metric),
        "n_repeats": n_repeats,
        "random_state": random_state,
        "rows": int(len(holdout)),
        "baseline_score": sign * baseline,
        "features": ranked,
    }
