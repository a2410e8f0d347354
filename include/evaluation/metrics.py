"""Task-aware model metrics, shared by training, evaluation and the drift monitor.

- binary: ``roc_auc``, ``pr_auc`` (average precision) and ``log_loss`` from
  P(positive class); labels 0/1.
- multiclass: ``macro_f1``, ``log_loss`` and ``recall`` per class; labels are
  class text.
- regression: ``rmse``, ``mae`` and ``r2``; labels and predictions in the
  target's units.

A metric that is undefined on the rows given (ROC AUC on one class, R² on one
row) is ``None``, never a made-up value: the gate treats None as "not
measurable". Definitions are scikit-learn's (``sklearn.metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from include.data.spec import HIGHER_IS_BETTER
from include.training import PROBABILITY_PREFIX


def _probability_matrix(outputs: Mapping[str, Any], classes: Sequence[str]) -> np.ndarray:
    return np.column_stack([np.asarray(outputs[f"{PROBABILITY_PREFIX}{name}"], dtype=np.float64) for name in classes])


def score(task: str, labels: Any, outputs: Mapping[str, Any], classes: Sequence[str] = ()) -> dict[str, Any]:
    """The task's metrics of ``outputs`` (served output columns, see :mod:`include.training.model`)
    against ``labels`` (typed by :func:`include.data.cast.target_array`), plus ``rows``.

    Returns floats (or None when undefined); multiclass adds ``recall``, a dict of
    class -> recall over the classes present in ``labels``. Raises ``ValueError`` for
    an unknown task.
    """
    from sklearn import metrics

    labels = np.asarray(labels)
    rows = int(len(labels))
    if rows == 0:
        return {"rows": 0}
    if task == "binary":
        probability = np.asarray(outputs["probability"], dtype=np.float64)
        both = len(np.unique(labels)) == 2
        return {
            "roc_auc": float(metrics.roc_auc_score(labels, probability)) if both else None,
            "pr_auc": float(metrics.average_precision_score(labels, probability)) if labels.any() else None,
            "log_loss": float(metrics.log_loss(labels, probability, labels=[0, 1])),
            "rows": rows,
        }
    if task == "multiclass":
        predicted = np.asarray(outputs["prediction"], dtype=object)
        present = [name for name in classes if name in set(labels.tolist())]
        recall = metrics.recall_score(labels, predicted, labels=present, average=None, zero_division=0)
        probabilities = _probability_matrix(outputs, classes)
        # rows' probabilities sum to 1 up to float error; log_loss insists on it
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        return {
            "macro_f1": float(metrics.f1_score(labels, predicted, average="macro", zero_division=0)),
            "log_loss": float(metrics.log_loss(labels, probabilities, labels=list(classes))),
            "recall": {name: float(value) for name, value in zip(present, recall, strict=True)},
            "rows": rows,
        }
    if task == "regression":
        predicted = np.asarray(outputs["prediction"], dtype=np.float64)
        labels = labels.astype(np.float64)
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(labels, predicted))),
            "mae": float(metrics.mean_absolute_error(labels, predicted)),
            "r2": float(metrics.r2_score(labels, predicted)) if rows > 1 and np.ptp(labels) > 0 else None,
            "rows": rows,
        }
    raise ValueError(f"unknown task {task!r}")


def baseline(task: str, metric: str, labels: Any, classes: Sequence[str] = ()) -> float | None:
    """The ``metric`` a no-skill model reaches on ``labels``: the bar a first model must beat
    when the spec sets no ``gate.min``. Returns a float, or None without labels.

    binary: ROC AUC 0.5, PR AUC the positive share, log loss of predicting that share;
    multiclass: predicting the most frequent class (macro-F1) or the class shares (log loss);
    regression: predicting the mean (RMSE, R² 0) or the median (MAE).
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return None
    if task == "binary":
        share = float(labels.mean())
        if metric == "roc_auc":
            return 0.5
        if metric == "pr_auc":
            return share
        constant = {"probability": np.full(len(labels), min(max(share, 1e-6), 1 - 1e-6))}
        return score(task, labels, constant)["log_loss"]
    if task == "multiclass":
        values, counts = np.unique(labels.astype(str), return_counts=True)
        shares = {name: 0.0 for name in classes}
        shares.update({value: count / len(labels) for value, count in zip(values, counts, strict=True)})
        outputs = {"prediction": np.full(len(labels), values[counts.argmax()], dtype=object)}
        outputs.update(
            {f"{PROBABILITY_PREFIX}{name}": np.full(len(labels), max(share, 1e-6)) for name, share in shares.items()}
        )
        return score(task, labels, outputs, classes)[metric]
    values = labels.astype(np.float64)
    center = np.median(values) if metric == "mae" else values.mean()
    if metric == "r2":
        return 0.0
    return score(task, values, {"prediction": np.full(len(values), center)})[metric]


def higher_is_better(metric: str) -> bool:
    """Returns whether larger values of ``metric`` are better (a bool); raises ``KeyError`` for an unknown metric."""
    return HIGHER_IS_BETTER[metric]


def loss_against(metric: str, value: float, reference: float) -> float:
    """How much worse ``value`` is than ``reference`` in ``metric``'s direction (negative: better), as a float
    in the metric's units. Raises ``KeyError`` for an unknown metric.
    """
    return reference - value if higher_is_better(metric) else value - reference
