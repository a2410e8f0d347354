"""Score the challenger (and the champion, when there is one) on the same held-out rows.

Both models are loaded the way serving loads them (``mlflow.pyfunc.load_model``)
and fed the same frame, so the comparison includes the preprocessing each one
carries. Metrics are reported overall and per value of the spec's
``slice_feature``, because an average can hide a segment that got worse. The
challenger's serving latency is measured too, since a model that is better but
too slow to serve must not be promoted.

The result is a plain, JSON-friendly dict: it is logged as ``evaluation.json``
and read by :func:`include.evaluation.gate.decide`. MLflow must already point
at the right store (``include.tracking.configure``).
"""
from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

LATENCY_REQUESTS = 50
LATENCY_WARMUP_REQUESTS = 5
MISSING_SLICE = "<missing>"
EVALUATION_ARTIFACT = "evaluation.json"


class EvaluationError(ValueError):
    """The held-out data or a model's output cannot be evaluated; the message says which."""


def _check_holdout(holdout: pd.DataFrame, spec: "DatasetSpec") -> np.ndarray:
    if not isinstance(holdout, pd.DataFrame):
        raise EvaluationError(f"holdout must be a pandas DataFrame, got {type(holdout).__name__}")
    missing = [name for name in [*spec.feature_names, spec.target] if name not in holdout.columns]
    if missing:
        raise EvaluationError(f"holdout is missing column(s): {', '.join(missing)}")
    if len(holdout) == 0:
        raise EvaluationError("holdout is empty: there is nothing to evaluate on")
    labels = holdout[spec.target]
    if labels.isna().any():
        raise EvaluationError(f"holdout has {int(labels.isna().sum())} missing label(s) in {spec.target!r}")
    try:
        values = labels.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"holdout labels in {spec.target!r} must be 0/1") from None
    if not np.isin(values, (0.0, 1.0)).all():
        raise EvaluationError(f"holdout labels in {spec.target!r} must be 0/1, got {sorted(set(values))[:5]}")
    return values.astype(np.int64)


def _load(uri: str, role: str):
    import mlflow

    if not isinstance(uri, str) or not uri:
        raise EvaluationError(f"{role} model URI must be a non-empty string, got {uri!r}")
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as exc:
        raise EvaluationError(f"could not load the {role} model {uri}: {exc}") from exc


def _probabilities(model, features: pd.DataFrame, role: str) -> np.ndarray:
    try:
        output = model.predict(features)
    except Exception as exc:
        raise EvaluationError(f"the {role} model could not score the holdout: {exc}") from exc
    if not isinstance(output, pd.DataFrame) or "probability" not in output.columns:
        raise EvaluationError(f"the {role} model must return a frame with a 'probability' column, "
                              f"got {type(output).__name__}")
    probability = pd.to_numeric(output["probability"], errors="coerce").to_numpy(dtype=np.float64)
    if len(probability) != len(features):
        raise EvaluationError(f"the {role} model returned {len(probability)} rows for {len(features)}")
    bad = ~np.isfinite(probability) | (probability < 0) | (probability > 1)
    if bad.any():
        raise EvaluationError(f"the {role} model returned {int(bad.sum())} probabilities that are not in [0, 1]")
    return probability


def _metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import log_loss, roc_auc_score

    both_classes = len(np.unique(labels)) == 2
    return {
        # ROC AUC is undefined on a single class: None says "not measurable", never a made-up 0.5
        "roc_auc": float(roc_auc_score(labels, probability)) if both_classes else None,
        "log_loss": float(log_loss(labels, probability, labels=[0, 1])),
        "rows": int(len(labels)),
    }


def _slice_keys(holdout: pd.DataFrame, spec: "DatasetSpec") -> tuple[list[str], np.ndarray]:
    values = holdout[spec.slice_feature]
    keys = np.where(values.isna(), MISSING_SLICE, values.astype(str)).astype(object)
    declared = list(spec.feature(spec.slice_feature).categories)
    present = set(keys)
    ordered = [value for value in declared if value in present]
    ordered += sorted(present - set(declared))
    return ordered, keys


def _score(model, features: pd.DataFrame, labels: np.ndarray, slice_order: list[str], slice_keys: np.ndarray,
           role: str) -> dict[str, Any]:
    probability = _probabilities(model, features, role)
    slices = {}
    for value in slice_order:
        mask = slice_keys == value
        slices[value] = _metrics(labels[mask], probability[mask])
    return {"overall": _metrics(labels, probability), "slices": slices}


def measure_latency(model, features: pd.DataFrame, rows: int = 1, requests: int = LATENCY_REQUESTS) -> dict[str, Any]:
    """p50/p95 milliseconds of ``requests`` single predict calls of ``rows`` rows, after a warm-up."""
    positions = np.arange(rows) % len(features)
    request = features.iloc[positions].reset_index(drop=True)
    # the first calls pay for lazy initialisation (allocator, thread pools), which a server pays once
    for _ in range(LATENCY_WARMUP_REQUESTS):
        model.predict(request)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        model.predict(request)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {"p50": float(np.percentile(timings, 50)), "p95": float(np.percentile(timings, 95)),
            "requests": requests, "rows_per_request": rows}


def evaluate(challenger_uri: str, champion_uri: str | None, holdout: pd.DataFrame, spec: "DatasetSpec",
             latency_budget_ms: float = 50.0, latency_rows: int = 1) -> dict[str, Any]:
    """Challenger (and champion) metrics on ``holdout``, overall and per slice, plus challenger latency."""
    from include.training.model import as_model_input

    if not (isinstance(latency_budget_ms, (int, float)) and math.isfinite(latency_budget_ms)
            and latency_budget_ms > 0):
        raise EvaluationError(f"latency_budget_ms must be a finite number > 0, got {latency_budget_ms!r}")
    if isinstance(latency_rows, bool) or not isinstance(latency_rows, int) or latency_rows < 1:
        raise EvaluationError(f"latency_rows must be an integer >= 1, got {latency_rows!r}")
    labels = _check_holdout(holdout, spec)
    features = as_model_input(holdout, spec)
    slice_order, slice_keys = _slice_keys(holdout, spec)

    challenger_model = _load(challenger_uri, "challenger")
    challenger = {"uri": challenger_uri,
                  **_score(challenger_model, features, labels, slice_order, slice_keys, "challenger")}
    latency = measure_latency(challenger_model, features, rows=latency_rows)
    challenger["latency_ms"] = latency
    challenger["latency_budget_ms"] = float(latency_budget_ms)
    challenger["within_latency_budget"] = bool(latency["p95"] <= latency_budget_ms)

    champion = None
    if champion_uri is not None:
        champion_model = _load(champion_uri, "champion")
        champion = {"uri": champion_uri,
                    **_score(champion_model, features, labels, slice_order, slice_keys, "champion")}
    return {
        "slice_feature": spec.slice_feature,
        "holdout_rows": int(len(holdout)),
        "challenger": challenger,
        "champion": champion,
    }


def metric_key(*parts: str) -> str:
    """An MLflow-legal metric name: characters MLflow rejects (e.g. '=' or '+') become '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", ".".join(parts))


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The challenger's numbers as flat metric names, e.g. ``holdout_roc_auc.plan.basic``; None is left out."""
    challenger = evaluation["challenger"]
    feature = evaluation["slice_feature"]
    metrics: dict[str, Any] = {"holdout_rows": evaluation.get("holdout_rows")}
    for name in ("roc_auc", "log_loss"):
        metrics[f"holdout_{name}"] = challenger["overall"].get(name)
    for value, scores in challenger.get("slices", {}).items():
        for name in ("roc_auc", "log_loss", "rows"):
            metrics[metric_key(f"holdout_{name}", feature, str(value))] = scores.get(name)
    latency = challenger.get("latency_ms") or {}
    metrics["latency_p50_ms"] = latency.get("p50")
    metrics["latency_p95_ms"] = latency.get("p95")
    return {key: float(value) for key, value in metrics.items() if value is not None}


def log_evaluation(run_id: str, evaluation: Mapping[str, Any]) -> None:
    """Log the challenger's metrics to its training run and the whole result as ``evaluation.json``.

    Re-running it for the same run overwrites the artifact and records the same
    metric values again at step 0, so a retried task leaves the same numbers.
    """
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    timestamp = int(time.time() * 1000)
    metrics = [Metric(key, value, timestamp, 0) for key, value in evaluation_metrics(evaluation).items()]
    client.log_batch(run_id, metrics=metrics)
    client.log_dict(run_id, dict(evaluation), EVALUATION_ARTIFACT)
