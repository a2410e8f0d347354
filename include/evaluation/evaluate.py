"""Score the challenger (and the champion, when there is one) on the same held-out rows.

Both models are loaded the way serving loads them (``mlflow.pyfunc.load_model``)
and fed the same frame, typed by the one cast (:mod:`include.data.cast`), so the
comparison includes the preprocessing each one carries. The task's metrics
(:mod:`include.evaluation.metrics`) are reported overall and per value of the
spec's ``slice_feature``, because an average can hide a segment that got worse.
The challenger's serving latency is measured too, since a model that is better
but too slow to serve must not be promoted.

Latency judges the model, not the machine: the figure the gate reads is the
p95 of the *CPU time* each single-row call costs the calling thread, which a
busy neighbour process does not inflate (it makes the call wait for a core, not
do more work). The wall-clock p50/p95 are reported beside it. A model that is
truly over budget does the work and is rejected on a quiet or a busy machine.

The result is an :class:`~include.evaluation.records.Evaluation`, returned as its
JSON-friendly dict (:meth:`~include.evaluation.records.Evaluation.to_dict`, whose
docstring gives the shape): it is logged as ``evaluation.json`` and read by
:func:`include.evaluation.gate.decide`. MLflow must already point
at the right store (``include.tracking.configure``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.evaluation.metrics import PROBABILITY_PREFIX, baseline, higher_is_better, score
from include.evaluation.records import Evaluation, Latency, ModelScores, Scores
from include.util.text import metric_key

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

LATENCY_REQUESTS = 50
LATENCY_WARMUP_REQUESTS = 5
LATENCY_METHOD = (
    "p95 of per-call CPU time of the calling thread, native thread pools at one thread, "
    "{requests} single calls of {rows} row(s)"
)
MISSING_SLICE = "<missing>"
EVALUATION_ARTIFACT = "evaluation.json"


class EvaluationError(ValueError):
    """The held-out data or a model's output cannot be evaluated; the message says which."""


def _check_holdout(holdout: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    from include.data.cast import CastError, target_array

    if not isinstance(holdout, pd.DataFrame):
        raise EvaluationError(f"holdout must be a pandas DataFrame, got {type(holdout).__name__}")
    missing = [name for name in [*spec.feature_names, spec.target] if name not in holdout.columns]
    if missing:
        raise EvaluationError(f"holdout is missing column(s): {', '.join(missing)}")
    if len(holdout) == 0:
        raise EvaluationError("holdout is empty: there is nothing to evaluate on")
    try:
        return target_array(holdout[spec.target], spec)
    except CastError as exc:
        raise EvaluationError(f"holdout labels: {exc}") from None


def _load(uri: str, role: str):
    import mlflow

    if not isinstance(uri, str) or not uri:
        raise EvaluationError(f"{role} model URI must be a non-empty string, got {uri!r}")
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as exc:
        raise EvaluationError(f"could not load the {role} model {uri}: {exc}") from exc


def _outputs(model, features: pd.DataFrame, spec: DatasetSpec, role: str) -> pd.DataFrame:
    """The model's output frame, checked against the task's contract."""
    try:
        output = model.predict(features)
    except Exception as exc:
        raise EvaluationError(f"the {role} model could not score the holdout: {exc}") from exc
    if not isinstance(output, pd.DataFrame):
        raise EvaluationError(f"the {role} model must return a frame, got {type(output).__name__}")
    if len(output) != len(features):
        raise EvaluationError(f"the {role} model returned {len(output)} rows for {len(features)}")
    if spec.task == "regression":
        needed = ["prediction"]
    elif spec.task == "binary":
        needed = ["probability"]
    else:
        needed = ["prediction", *(f"{PROBABILITY_PREFIX}{name}" for name in spec.classes)]
    absent = [name for name in needed if name not in output.columns]
    if absent:
        raise EvaluationError(f"the {role} model's output lacks column(s) {absent} a {spec.task} model returns")
    for name in needed:
        if name == "prediction" and spec.task == "multiclass":
            continue
        values = pd.to_numeric(output[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if name != "prediction":
            bad |= (values < 0) | (values > 1)
        if bad.any():
            kind = "finite values" if name == "prediction" else "probabilities in [0, 1]"
            raise EvaluationError(f"the {role} model returned {int(bad.sum())} {name!r} values that are not {kind}")
    return output


def _slice_keys(holdout: pd.DataFrame, spec: DatasetSpec) -> tuple[list[str], np.ndarray]:
    from include.data.cast import categorical_column

    if spec.slice_feature is None:
        return [], np.empty(0, dtype=object)
    values = categorical_column(holdout[spec.slice_feature], spec.slice_feature)
    keys = np.array([MISSING_SLICE if value is None else value for value in values], dtype=object)
    declared = list(spec.feature(spec.slice_feature).categories)
    present = set(keys)
    ordered = [value for value in declared if value in present]
    ordered += sorted(present - set(declared))
    return ordered, keys


def _score(
    model,
    features: pd.DataFrame,
    labels: np.ndarray,
    slice_order: list[str],
    slice_keys: np.ndarray,
    spec: DatasetSpec,
    role: str,
) -> tuple[Scores, dict[str, Scores]]:
    """(overall scores, scores per slice value)."""
    output = _outputs(model, features, spec, role)
    columns = {name: output[name].to_numpy() for name in output.columns}
    slices = {}
    for value in slice_order:
        mask = slice_keys == value
        slices[value] = score(
            spec.task, labels[mask], {name: array[mask] for name, array in columns.items()}, spec.classes
        )
    return score(spec.task, labels, columns, spec.classes), slices


@contextmanager
def _one_thread():
    """Run the model's native thread pools (OpenMP, BLAS, torch) on the calling thread only.

    A pool thread that another process keeps off its core makes the calling thread spin at
    the pool's barrier, and spinning is CPU time: measured beside a busy neighbour, a
    gradient-boosting model's one-row p95 went from 0.3 to 2.9 ms. One row gains nothing from
    a pool, and the server runs its models on one thread per worker likewise.
    """
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(threads)


def measure_latency(model, features: pd.DataFrame, rows: int = 1, requests: int = LATENCY_REQUESTS) -> dict[str, Any]:
    """How long one request of ``rows`` rows takes, over ``requests`` calls after a warm-up.

    Returns ``p50``/``p95`` (milliseconds of CPU time the call cost its thread:
    the figure the gate reads), ``wall_p50``/``wall_p95`` (milliseconds of wall
    clock, which include waiting for a core on a busy machine), ``requests``,
    ``rows_per_request`` and ``method`` (how the figure was taken, in words): a
    :class:`~include.evaluation.records.Latency` as a dict.
    """
    return _measure_latency(model, features, rows, requests).to_dict()


def _measure_latency(model, features: pd.DataFrame, rows: int, requests: int) -> Latency:
    positions = np.arange(rows) % len(features)
    request = features.iloc[positions].reset_index(drop=True)
    cpu, wall = [], []
    with _one_thread():
        # the first calls pay for lazy initialisation (allocator, thread pools), which a server pays once
        for _ in range(LATENCY_WARMUP_REQUESTS):
            model.predict(request)
        for _ in range(requests):
            started_cpu, started_wall = time.thread_time(), time.perf_counter()
            model.predict(request)
            cpu.append((time.thread_time() - started_cpu) * 1000.0)
            wall.append((time.perf_counter() - started_wall) * 1000.0)
    return Latency(
        p50=float(np.percentile(cpu, 50)),
        p95=float(np.percentile(cpu, 95)),
        wall_p50=float(np.percentile(wall, 50)),
        wall_p95=float(np.percentile(wall, 95)),
        requests=requests,
        rows_per_request=rows,
        method=LATENCY_METHOD.format(requests=requests, rows=rows),
    )


def evaluate(
    challenger_uri: str,
    champion_uri: str | None,
    holdout: pd.DataFrame,
    spec: DatasetSpec,
    latency_budget_ms: float = 50.0,
    latency_rows: int = 1,
    metric: str | None = None,
) -> dict[str, Any]:
    """Challenger (and champion) metrics on ``holdout``, overall and per slice, plus challenger latency.

    ``metric`` is the gate's metric (default: the spec's ``gate.metric``); the result
    carries it, its direction and the no-skill ``baseline`` on these rows. Returns
    :meth:`Evaluation.to_dict <include.evaluation.records.Evaluation.to_dict>` (the
    shape is in :mod:`include.evaluation.records`); ``champion`` is None without a
    champion URI. Raises
    :class:`EvaluationError` for bad arguments, a model that cannot be loaded or
    whose output breaks the task's contract, or unusable labels.
    """
    from include.data.spec import TASK_METRICS
    from include.training.model import ModelError, as_model_input

    if not (isinstance(latency_budget_ms, (int, float)) and math.isfinite(latency_budget_ms) and latency_budget_ms > 0):
        raise EvaluationError(f"latency_budget_ms must be a finite number > 0, got {latency_budget_ms!r}")
    if isinstance(latency_rows, bool) or not isinstance(latency_rows, int) or latency_rows < 1:
        raise EvaluationError(f"latency_rows must be an integer >= 1, got {latency_rows!r}")
    metric = metric or spec.gate.metric
    if metric not in TASK_METRICS[spec.task]:
        raise EvaluationError(
            f"metric {metric!r} does not fit task {spec.task!r}; expected one of {', '.join(TASK_METRICS[spec.task])}"
        )
    labels = _check_holdout(holdout, spec)
    try:
        features = as_model_input(holdout, spec)
    except ModelError as exc:
        raise EvaluationError(f"holdout features: {exc}") from None
    slice_order, slice_keys = _slice_keys(holdout, spec)

    challenger_model = _load(challenger_uri, "challenger")
    overall, slices = _score(challenger_model, features, labels, slice_order, slice_keys, spec, "challenger")
    latency = _measure_latency(challenger_model, features, latency_rows, LATENCY_REQUESTS)
    challenger = ModelScores(
        challenger_uri,
        overall,
        slices,
        latency_ms=latency,
        latency_budget_ms=float(latency_budget_ms),
        within_latency_budget=bool(latency.p95 <= latency_budget_ms),
    )

    champion = None
    if champion_uri is not None:
        champion_model = _load(champion_uri, "champion")
        champion = ModelScores(
            champion_uri, *_score(champion_model, features, labels, slice_order, slice_keys, spec, "champion")
        )
    return Evaluation(
        task=spec.task,
        metric=metric,
        higher_is_better=higher_is_better(metric),
        baseline=baseline(spec.task, metric, labels, spec.classes),
        slice_feature=spec.slice_feature,
        holdout_rows=int(len(holdout)),
        challenger=challenger,
        champion=champion,
    ).to_dict()


def evaluation_metrics(evaluation: Mapping[str, Any] | Evaluation) -> dict[str, float]:
    """The challenger's numbers as flat metric names, e.g. ``holdout_roc_auc.plan.basic`` or
    ``holdout_recall.Adelie``; None is left out. Returns a dict of metric name to float.

    ``evaluation`` is :func:`evaluate`'s result or its record; raises ``ValueError``
    (from :meth:`Evaluation.from_dict <include.evaluation.records.Evaluation.from_dict>`)
    naming the key a malformed one lacks or has bad.
    """
    if not isinstance(evaluation, Evaluation):
        evaluation = Evaluation.from_dict(evaluation)
    challenger = evaluation.challenger
    feature = evaluation.slice_feature or "slice"
    metrics: dict[str, Any] = {"holdout_rows": evaluation.holdout_rows}

    def add(prefix: str, scores: Mapping[str, Any], *suffix: str) -> None:
        for name, value in scores.items():
            if name == "recall" and isinstance(value, Mapping):
                for label, recall in value.items():
                    metrics[metric_key(f"{prefix}recall", *suffix, str(label))] = recall
            elif name != "rows" or suffix:
                metrics[metric_key(f"{prefix}{name}", *suffix)] = value

    add("holdout_", challenger.overall)
    for value, scores in challenger.slices.items():
        add("holdout_", scores, feature, str(value))
    latency = challenger.latency_ms
    if latency is not None:
        metrics.update(
            latency_p50_ms=latency.p50,
            latency_p95_ms=latency.p95,
            latency_wall_p50_ms=latency.wall_p50,
            latency_wall_p95_ms=latency.wall_p95,
        )
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


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
