"""The nightly drift check: served traffic of one window against the data the champion learned from.

One window (a data interval of the inference log) is compared with a *reference*:
the training part of the exact dataset snapshot the current champion was trained
on, found through the champion's lineage tags, together with the champion's own
predicted probabilities on it. An Evidently 0.7 report measures

- data drift of every feature column (a per-column distance and a drifted flag),
  and the dataset drift share = drifted feature columns / feature columns;
- prediction drift: the distance between the reference's and the window's
  predictions (:func:`prediction_column`: the probability of a binary model, the
  predicted class of a multiclass one, the value of a regression one);
- when enough labels have arrived, the champion's score on the labelled rows in
  the task's metric (the spec's ``gate.metric``: ROC AUC, macro-F1, RMSE, ...)
  and how much worse it is than on the snapshot's held-out rows.

Per-column methods
==================
Evidently picks a method per column from the *reference size*: above 1000
reference rows the normed Wasserstein distance (numeric) and the Jensen-Shannon
distance (categorical), at or below it the Kolmogorov-Smirnov / chi-square
p-values. The p-value tests answer "are these two samples from exactly the same
distribution?", and their power grows with the window: measured here with an
800-row reference and an undrifted 100k-row window, the defaults flagged all four
categorical columns (chi-square p = 0.0, drift share 0.4): a false alarm. The
distances measure *how far* the distributions are, which does not grow with the
sample size. So the methods are pinned to the distances whatever the reference
size (:data:`NUMERIC_DRIFT_METHOD`, :data:`CATEGORICAL_DRIFT_METHOD`, with
Evidently's default threshold 0.1 written out), which also keeps each column's
logged ``drift_score`` one quantity (higher = more drift) from night to night.
Missing values are dropped before measuring; a column with no value at all is
refused (:class:`DriftInputError`).

Exact figures, sampled plots
============================
The scores, verdicts, drift share and ROC AUC are computed on *all* rows of the
window and the reference, with :mod:`include.monitoring.drift_stats` (the same
statistics Evidently's stattests compute, vectorised) and scikit-learn. The
Evidently report in ``report.html`` is drawn from a seeded sample of at most
:data:`REPORT_SAMPLE_ROWS` rows per side, which the page and ``metrics.json``
(``report_sample``) say; a window and a reference no larger than that are shown
whole. Evidently's own report on a million rows per side takes minutes and
gigabytes, because it recomputes each statistic several times and plots every row.

Nothing here decides whether to retrain (see :mod:`include.monitoring.decision`);
the thresholds passed in are recorded with the results and shown in the report
next to the numbers they apply to.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring.drift_stats import EmptyColumnError, column_drifts

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

log = logging.getLogger(__name__)

DRIFT_EXPERIMENT = "drift_monitoring"
PROBABILITY_COLUMN = "probability"
PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"
# below this many labelled rows (or with one class only) the window's score is noise, not a measurement
MIN_LABELLED_ROWS = 50

NUMERIC_DRIFT_METHOD = "wasserstein"
NUMERIC_DRIFT_THRESHOLD = 0.1
CATEGORICAL_DRIFT_METHOD = "jensenshannon"
CATEGORICAL_DRIFT_THRESHOLD = 0.1

# rows per side the Evidently report is drawn from; the figures of record use every row
REPORT_SAMPLE_ROWS = 5_000
REPORT_SAMPLE_SEED = 20_240_301
# a column that has values in the data but none in the sample gets this many rows that have one
REPORT_SAMPLE_TOP_UP_ROWS = 50

WINDOW_START_TAG = "window_start"
REPORT_HTML = "report.html"
METRICS_JSON = "metrics.json"
LINEAGE_TAGS = ("data.repo", "data.path", "data.md5", "data.rev", "data.rows", "data.window")


class DriftInputError(ValueError):
    """The window cannot be compared: the message names the column and what was expected."""


class DriftReferenceError(RuntimeError):
    """No reference can be built: no champion, or its lineage tags do not lead to its data."""


class DriftRunNotFound(LookupError):
    """No ``drift_monitoring`` run exists for the window."""


@dataclass
class WindowCheck:
    status: str  # "ok" | "insufficient_data"
    rows: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Reference:
    """What the champion learned from: typed feature columns, its prediction column and ``label`` per row.

    ``holdout_score`` is the champion's ``metric`` on the snapshot's held-out rows.
    """

    frame: pd.DataFrame = field(repr=False)
    model_version: str
    data_ref: dict[str, Any]
    holdout_score: float | None
    metric: str = "roc_auc"


def prediction_column(spec: "DatasetSpec") -> str:
    """The output column whose drift is prediction drift: ``probability`` (binary), ``prediction``
    (the class of a multiclass model, the value of a regression one)."""
    return PROBABILITY_COLUMN if spec.task == "binary" else PREDICTION_COLUMN


def _prediction_is_numeric(spec: "DatasetSpec") -> bool:
    return spec.task != "multiclass"


# ---------------------------------------------------------------------------------------- window checks
def _is_real_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _example(values: pd.Series) -> str:
    shown = values.dropna().head(3).tolist()
    return ", ".join(repr(value) for value in shown)


def _check_numeric(name: str, values: pd.Series, what: str) -> None:
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DriftInputError(f"{what} {name!r} should be numeric but arrived as booleans")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return
    present = values.dropna()
    if present.empty:
        return  # nothing to judge the type by: the all-empty check names it
    if values.dtype == object and all(_is_real_number(value) for value in present):
        return  # numbers held in an object column (e.g. ints mixed with None) compare fine
    raise DriftInputError(f"{what} {name!r} should be numeric but arrived as {values.dtype} "
                          f"(values like {_example(values)})")


def _all_missing(values: pd.Series) -> bool:
    if values.dtype == object:
        # infer_dtype walks the objects in C, several times faster than isna() on a large window
        return pd.api.types.infer_dtype(values, skipna=True) == "empty"
    return bool(values.isna().all())


def _check_categorical(name: str, values: pd.Series) -> None:
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        if _all_missing(values):
            return  # nothing to judge the type by: the all-empty check names it
        raise DriftInputError(f"categorical feature {name!r} should hold strings but arrived as {values.dtype} "
                              f"(values like {_example(values)})")
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(values.cat.categories)
    # "string": every present value is a str; "empty": none is present (the all-empty check names it)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        raise DriftInputError(f"categorical feature {name!r} should hold strings but arrived as {values.dtype} "
                              f"(values like {_example(values)})")


def _label_values(values: pd.Series, spec: "DatasetSpec") -> np.ndarray:
    """The window's present labels typed for the task (see :func:`include.data.cast.target_array`)."""
    from include.data.cast import CastError, target_array

    try:
        return target_array(values.dropna(), spec)
    except CastError as exc:
        raise DriftInputError(f"column {LABEL_COLUMN!r}: {exc}") from None


def _check_structure(current: pd.DataFrame, spec: "DatasetSpec") -> None:
    """Missing and retyped columns: wrong whatever the window's size."""
    predicted = prediction_column(spec)
    required = [*spec.feature_names, predicted]
    missing = [name for name in required if name not in current.columns]
    if missing:
        raise DriftInputError(f"window is missing column(s) {', '.join(repr(name) for name in missing)}; "
                              f"expected every feature of spec {spec.name!r} and {predicted!r}")
    for name in spec.numeric_features:
        _check_numeric(name, current[name], "numeric feature")
    for name in spec.categorical_features:
        _check_categorical(name, current[name])
    if _prediction_is_numeric(spec):
        _check_numeric(predicted, current[predicted], "column")
    else:
        _check_categorical(predicted, current[predicted])
    if PROBABILITY_COLUMN in current.columns and spec.task != "regression":
        _check_numeric(PROBABILITY_COLUMN, current[PROBABILITY_COLUMN], "column")
        probability = pd.to_numeric(current[PROBABILITY_COLUMN].dropna(), errors="coerce")
        outside = probability[(probability < 0) | (probability > 1) | probability.isna()]
        if not outside.empty:
            raise DriftInputError(f"column {PROBABILITY_COLUMN!r} should hold probabilities in [0, 1], "
                                  f"got values like {outside.head(3).tolist()}")
    if LABEL_COLUMN in current.columns:
        _label_values(current[LABEL_COLUMN], spec)


def _check_not_empty_columns(current: pd.DataFrame, spec: "DatasetSpec") -> None:
    predicted = prediction_column(spec)
    for name in [*spec.feature_names, predicted]:
        if _all_missing(current[name]):
            expected = "predictions" if name == predicted else f"{spec.feature(name).type} values"
            raise DriftInputError(f"column {name!r} is empty: all {len(current)} values are missing; "
                                  f"expected {expected} in at least some rows")


def check_window(current: pd.DataFrame, spec: "DatasetSpec", min_rows: int) -> WindowCheck:
    """Whether ``current`` can be compared at all.

    An empty window, or one below ``min_rows``, is ``insufficient_data`` (never a
    verdict). A window with a missing or retyped column raises
    :class:`DriftInputError` whatever its size; an all-empty column does so once
    the window is large enough to be judged (a few rows may well all lack an
    optional value). An empty window may lack the feature columns: the inference
    log does not know them when it holds no request.
    """
    if not isinstance(current, pd.DataFrame):
        raise DriftInputError(f"the window must be a pandas DataFrame, got {type(current).__name__}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ValueError(f"min_rows must be an integer >= 1, got {min_rows!r}")
    rows = len(current)
    if rows == 0:
        return WindowCheck("insufficient_data", 0, "the window holds no served prediction")
    _check_structure(current, spec)
    if rows < min_rows:
        return WindowCheck("insufficient_data", rows,
                           f"the window holds {rows} served prediction(s), fewer than min_rows={min_rows}")
    _check_not_empty_columns(current, spec)
    return WindowCheck("ok", rows, f"{rows} served predictions (min_rows={min_rows})")


# ---------------------------------------------------------------------------------------- reference
def _parse_window(value: str, model_name: str, version: str) -> tuple[str, str]:
    start, separator, end = value.partition("..")
    try:
        if not separator:
            raise ValueError(value)
        date.fromisoformat(start)
        date.fromisoformat(end)
    except ValueError:
        raise DriftReferenceError(f"{model_name} version {version}: tag data.window={value!r} is not "
                                  f"'YYYY-MM-DD..YYYY-MM-DD'") from None
    return start, end


def reference_for_champion(settings: "Settings", spec: "DatasetSpec") -> Reference:
    """The champion's training rows with its predictions on them, read back through its lineage tags.

    ``holdout_score`` (the spec's ``gate.metric``) is *computed* here (the champion
    scoring the snapshot's held-out rows) rather than read from the version's
    ``gate.challenger_score`` tag: a version registered outside the pipeline has no
    gate tag, and computing it guarantees the same model, the same rows and the
    same metric as the window's score it is compared with; it costs one prediction
    on the held-out rows.
    """
    import mlflow

    from include import registry, tracking
    from include.data.cast import target_array
    from include.data.split import holdout_split
    from include.data.versioning import DataRegistry, DatasetRef
    from include.evaluation.metrics import score
    from include.training.model import as_model_input

    tracking.configure(settings)
    model_name = settings.model_name
    version = registry.alias_version(model_name, registry.CHAMPION)
    if version is None:
        raise DriftReferenceError(f"model {model_name!r} has no {registry.CHAMPION!r} alias in the registry at "
                                  f"{settings.tracking_uri}: there is no deployed model to compare traffic with")
    tags = registry.version_tags(model_name, version)
    missing = [key for key in LINEAGE_TAGS if not tags.get(key)]
    if missing:
        raise DriftReferenceError(f"champion {model_name} version {version} lacks lineage tag(s) "
                                  f"{', '.join(missing)}: cannot find the data it was trained on")
    window_start, window_end = _parse_window(tags["data.window"], model_name, version)
    try:
        ref = DatasetRef.from_dict({"repo": tags["data.repo"], "path": tags["data.path"], "md5": tags["data.md5"],
                                    "rev": tags["data.rev"], "rows": tags["data.rows"],
                                    "window_start": window_start, "window_end": window_end})
    except ValueError as exc:
        raise DriftReferenceError(f"champion {model_name} version {version}: bad lineage tags: {exc}") from None
    snapshot = DataRegistry(ref.repo, settings.dvc_remote).load(ref)
    if spec.target not in snapshot.columns:
        raise DriftReferenceError(f"the champion's snapshot {ref.describe()} has no target column {spec.target!r}")
    train, holdout = holdout_split(snapshot, spec)

    model = mlflow.pyfunc.load_model(registry.model_uri(model_name, version))
    features = as_model_input(train, spec)
    predicted = model.predict(features)[prediction_column(spec)].to_numpy()
    holdout_output = model.predict(as_model_input(holdout, spec))
    metric = spec.gate.metric
    holdout_score = score(spec.task, target_array(holdout[spec.target], spec),
                          {name: holdout_output[name].to_numpy() for name in holdout_output.columns},
                          spec.classes).get(metric)

    frame = features.reset_index(drop=True)
    frame[prediction_column(spec)] = predicted
    frame[LABEL_COLUMN] = target_array(train[spec.target], spec)
    log.info("reference: %s version %s, %d training rows of %s, held-out %s %s", model_name, version,
             len(frame), ref.describe(), metric, holdout_score)
    return Reference(frame=frame, model_version=str(version), data_ref=ref.to_dict(),
                     holdout_score=holdout_score, metric=metric)


# ---------------------------------------------------------------------------------------- the report
def _comparable(frame: pd.DataFrame, spec: "DatasetSpec") -> pd.DataFrame:
    """Features and prediction typed alike on both sides: numerics float64, categoricals str or None."""
    from include.data.cast import categorical_column, numeric_column

    columns = {}
    for name in spec.numeric_features:
        columns[name] = numeric_column(frame[name], name)
    for name in spec.categorical_features:
        columns[name] = categorical_column(frame[name], name)
    predicted = prediction_column(spec)
    columns[predicted] = (numeric_column(frame[predicted], predicted) if _prediction_is_numeric(spec)
                          else categorical_column(frame[predicted], predicted))
    return pd.DataFrame(columns)


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        # an unmeasurable column must never count as "not drifted"
        raise RuntimeError(f"the drift check computed a non-finite {what}: {value!r}")
    return number


def _measurable(values: pd.Series) -> np.ndarray:
    """Which rows of a column a drift statistic can use: present and, if numeric, finite."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        array = values.to_numpy()
        if array.dtype.kind != "f":
            array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.isfinite(array)
    return values.notna().to_numpy()


def _any_measurable(values: pd.Series) -> bool:
    if values.dtype == object:
        return not _all_missing(values)
    return bool(_measurable(values).any())


def report_sample(frame: pd.DataFrame, columns: list[str], rows: int = REPORT_SAMPLE_ROWS,
                  seed: int = REPORT_SAMPLE_SEED) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame`` (all of it when it is no larger), drawn with a fixed seed.

    A column that has measurable values in ``frame`` keeps some in the sample: rows
    that have one are added when the draw has none, since Evidently refuses to plot a
    column with no value. The sample only draws the report; no figure of record comes from it.
    """
    if len(frame) <= rows:
        return frame
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(len(frame), size=rows, replace=False))
    for name in columns:
        if _measurable(frame[name].iloc[chosen]).any():
            continue
        measurable = _measurable(frame[name])
        if measurable.any():
            candidates = np.flatnonzero(measurable)
            extra = generator.choice(candidates, size=min(REPORT_SAMPLE_TOP_UP_ROWS, len(candidates)),
                                     replace=False)
            chosen = np.union1d(chosen, extra)
    return frame.iloc[chosen]


def _write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp:
            temp.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _sample_note(sample: dict[str, Any]) -> str:
    shown = (f"{sample['current_rows']} of the window's {sample['current_rows_total']} rows and "
             f"{sample['reference_rows']} of the reference's {sample['reference_rows_total']} rows")
    if sample["sampled"]:
        return (f"The Evidently report below is drawn from a seeded sample (seed {sample['seed']}): {shown}. "
                f"Its per-column scores and verdicts are those of the sample; the figures of record, above "
                f"and in metrics.json, are computed on all rows.")
    return f"The Evidently report below is drawn from all rows: {shown}."


def _report_html(metrics: dict[str, Any], drift_snapshot, performance_snapshot, performance_note: str) -> str:
    """One self-contained Evidently page: a summary, the exact figures, the drift report, then performance.

    Built from the snapshots' widgets (``to_snapshot_model``) so the page carries
    Evidently's script bundle once rather than once per report.
    """
    from evidently.core.report import Snapshot
    from evidently.core.serialization import SnapshotModel
    from evidently.legacy.renderers.html_widgets import table_data, text_widget

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    reference = metrics["reference_data"]
    prediction = metrics["prediction_drift"]
    kind = "Regression" if metrics["metric"] in ("rmse", "mae", "r2") else "Classification"
    summary = (
        f"{metrics['rows']} served predictions ({metrics['labelled_rows']} labelled) compared with the "
        f"{metrics['reference_rows']} training rows of champion version {metrics['champion_version']} "
        f"(`{reference['path']}`, md5 `{reference['md5']}`, rev `{reference['rev'][:12]}`).\n\n"
        f"**Drift share {metrics['drift_share']:.2f}** (threshold {metrics['drift_share_threshold']:.2f}); "
        f"drifted columns: {', '.join(metrics['drifted_columns']) or 'none'}.\n\n"
        f"Prediction drift: {prediction['method']} {prediction['drift_score']:.4f} "
        f"({'drifted' if prediction['drifted'] else 'not drifted'}, threshold {prediction['threshold']}).\n\n"
        f"{metrics['metric']} {number(metrics['score'])} on the window vs {number(metrics['reference_score'])} "
        f"on the snapshot's held-out rows: drop {number(metrics['performance_drop'])} "
        f"(threshold {metrics['performance_drop_threshold']:.2f}); {performance_note}.\n\n"
        f"{_sample_note(metrics['report_sample'])}"
    )
    exact = table_data(
        title="Drift per column, on all rows",
        column_names=["column", "method", "drift score", "threshold", "drifted"],
        data=[[name, result["method"], f"{result['drift_score']:.6f}", f"{result['threshold']:g}",
               "yes" if result["drifted"] else "no"]
              for name, result in [*metrics["columns"].items(), (metrics["prediction_column"], prediction)]],
    )
    drift = drift_snapshot.to_snapshot_model()
    widgets = [text_widget(title="Drift report", text=summary), exact, *drift.widgets]
    metric_results, top_level = dict(drift.metric_results), list(drift.top_level_metrics)
    if performance_snapshot is None:
        widgets.append(text_widget(title=f"{kind} performance", text=performance_note))
    else:
        classification = performance_snapshot.to_snapshot_model()
        widgets.append(text_widget(title=f"{kind} performance on the labelled rows", text=performance_note))
        widgets.extend(classification.widgets)
        metric_results.update(classification.metric_results)
        top_level.extend(classification.top_level_metrics)
    page = SnapshotModel(report=drift.report, name=drift.name, timestamp=drift.timestamp, metadata=drift.metadata,
                         tags=drift.tags, metric_results=metric_results, top_level_metrics=top_level,
                         widgets=widgets, tests_widgets=drift.tests_widgets)
    return Snapshot.load_model(page).get_html_str(as_iframe=False)


def drift_methods(spec: "DatasetSpec") -> dict[str, tuple[str, float]]:
    """The pinned method and threshold of every measured column: the features, then the prediction."""
    methods = {name: (NUMERIC_DRIFT_METHOD, NUMERIC_DRIFT_THRESHOLD) for name in spec.numeric_features}
    methods.update({name: (CATEGORICAL_DRIFT_METHOD, CATEGORICAL_DRIFT_THRESHOLD)
                    for name in spec.categorical_features})
    # the prediction drifts by the statistic of its kind: a probability or a value is numeric,
    # a predicted class categorical
    predicted = prediction_column(spec)
    methods[predicted] = ((NUMERIC_DRIFT_METHOD, NUMERIC_DRIFT_THRESHOLD) if _prediction_is_numeric(spec)
                          else (CATEGORICAL_DRIFT_METHOD, CATEGORICAL_DRIFT_THRESHOLD))
    return {name: methods[name] for name in [*spec.feature_names, predicted]}


def run_drift_check(current: pd.DataFrame, reference: Reference, spec: "DatasetSpec", *,
                    drift_share_threshold: float, performance_drop_threshold: float,
                    html_path: str | Path, min_labelled_rows: int = MIN_LABELLED_ROWS,
                    report_sample_rows: int = REPORT_SAMPLE_ROWS) -> dict[str, Any]:
    """Measure ``current`` against ``reference`` on all rows; save the Evidently report's HTML; return the numbers.

    The thresholds are recorded in the result (and shown in the report); whether to act
    on them is :func:`include.monitoring.decision.decide`'s call. The result holds
    ``metric`` (the reference's), ``score`` (on the window's labelled rows, or None),
    ``reference_score`` and ``performance_drop`` (how much worse, in the metric's
    units; None when not measured), beside the drift figures.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    from include.evaluation.metrics import loss_against, score

    for name, value in (("drift_share_threshold", drift_share_threshold),
                        ("performance_drop_threshold", performance_drop_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if isinstance(report_sample_rows, bool) or not isinstance(report_sample_rows, int) or report_sample_rows < 1:
        raise ValueError(f"report_sample_rows must be a positive integer, got {report_sample_rows!r}")
    if not isinstance(reference, Reference):
        raise ValueError(f"reference must be a Reference, got {type(reference).__name__}")
    if len(current) == 0:
        raise DriftInputError("the window holds no served prediction: nothing to compare "
                              "(check_window reports this as insufficient_data)")
    _check_structure(current, spec)
    _check_not_empty_columns(current, spec)
    predicted = prediction_column(spec)
    measured = [*spec.feature_names, predicted]
    missing = [name for name in measured if name not in reference.frame.columns]
    if missing:
        raise ValueError(f"reference frame is missing column(s) {', '.join(missing)}")

    numeric = {*spec.numeric_features, *([predicted] if _prediction_is_numeric(spec) else [])}
    for frame, side, names in ((current, "window", [name for name in measured if name in numeric]),
                               (reference.frame, "reference", measured)):
        # the window's all-missing columns are refused above; here: a numeric one with only infinities
        unmeasurable = [name for name in names if not _any_measurable(frame[name])]
        if unmeasurable:
            # e.g. only infinities: nothing to measure, which must never read as "no drift"
            message = (f"{side} column(s) {', '.join(repr(name) for name in unmeasurable)} hold no finite value "
                       f"to measure")
            raise DriftInputError(message) if side == "window" else ValueError(message)

    current_sample = report_sample(current, measured, report_sample_rows)
    reference_sample = report_sample(reference.frame, measured, report_sample_rows)
    definition = DataDefinition(numerical_columns=[name for name in measured if name in numeric],
                                categorical_columns=[name for name in measured if name not in numeric])

    def drift_report():
        # one ValueDrift per column (its distributions and test): DataDriftPreset would add a table
        # of the same columns, which the page already has with the exact figures, at twice the cost
        report = Report([ValueDrift(column=name, method=method, threshold=threshold)
                         for name, (method, threshold) in drift_methods(spec).items()], include_tests=True)
        return report.run(
            current_data=Dataset.from_pandas(_comparable(current_sample, spec), data_definition=definition),
            reference_data=Dataset.from_pandas(_comparable(reference_sample, spec), data_definition=definition))

    try:
        # the exact measurements run in worker threads while this one draws the (sampled) report
        results, drift_snapshot = column_drifts(reference.frame, current, drift_methods(spec),
                                                while_computing=drift_report)
    except EmptyColumnError as empty:
        if empty.side == "current":
            raise DriftInputError(f"window: {empty}") from None
        raise ValueError(f"reference frame: {empty}") from None
    per_column = {name: {**result.to_dict(), "drift_score": _finite(result.drift_score,
                                                                     f"drift score for column {name!r}")}
                  for name, result in results.items()}
    columns = {name: per_column[name] for name in spec.feature_names}
    drifted_columns = [name for name, result in columns.items() if result["drifted"]]

    labels = current[LABEL_COLUMN] if LABEL_COLUMN in current.columns else pd.Series(pd.NA, index=current.index)
    labelled = current.loc[labels.notna().to_numpy()]
    label_values = _label_values(labelled[LABEL_COLUMN], spec) if len(labelled) else np.zeros(0)
    metric = reference.metric
    window_score, performance_snapshot = None, None
    if len(labelled) < min_labelled_rows:
        performance_note = (f"not measured: {len(labelled)} labelled row(s) in the window, "
                            f"fewer than {min_labelled_rows}")
    else:
        outputs = {name: labelled[name].to_numpy() for name in labelled.columns}
        window_score = score(spec.task, label_values, outputs, spec.classes).get(metric)
        if window_score is None:
            performance_note = (f"not measured: {metric} is undefined on the {len(labelled)} labelled rows "
                                f"(all labels {label_values[0]!r}; ROC AUC needs both classes)")
        else:
            window_score = _finite(window_score, metric)
            performance_snapshot, shown = _performance_report(labelled, label_values, spec, report_sample_rows)
            performance_note = f"measured on {len(labelled)} labelled rows"
            if shown < len(labelled):
                performance_note += f" (the report below plots a seeded sample of {shown})"
    reference_score = None if reference.holdout_score is None else float(reference.holdout_score)
    performance_drop = (loss_against(metric, window_score, reference_score)
                        if window_score is not None and reference_score is not None else None)

    metrics = {
        "rows": int(len(current)),
        "labelled_rows": int(len(labelled)),
        "drift_share": len(drifted_columns) / len(spec.feature_names),
        "drifted_columns": drifted_columns,
        "columns": columns,
        "prediction_column": predicted,
        "prediction_drift": per_column[predicted],
        "metric": metric,
        "score": window_score,
        "reference_score": reference_score,
        "performance_drop": performance_drop,
        "performance_note": performance_note,
        "champion_version": str(reference.model_version),
        "reference_data": {key: str(reference.data_ref.get(key, "")) for key in ("path", "md5", "rev")},
        "reference_rows": int(len(reference.frame)),
        # how many days the champion learned from: a retraining it triggers learns from as many
        "reference_window_days": _window_days(reference.data_ref),
        "drift_share_threshold": float(drift_share_threshold),
        "performance_drop_threshold": float(performance_drop_threshold),
        # what the HTML report's Evidently part is drawn from; every figure above uses all rows
        "report_sample": {
            "sampled": len(current_sample) < len(current) or len(reference_sample) < len(reference.frame),
            "seed": REPORT_SAMPLE_SEED,
            "current_rows": int(len(current_sample)), "current_rows_total": int(len(current)),
            "reference_rows": int(len(reference_sample)), "reference_rows_total": int(len(reference.frame)),
        },
    }
    _write_text_atomically(Path(html_path), _report_html(metrics, drift_snapshot, performance_snapshot,
                                                         performance_note))
    return metrics


def _window_days(data_ref: dict[str, Any]) -> int | None:
    try:
        return (date.fromisoformat(str(data_ref["window_end"])) - date.fromisoformat(str(data_ref["window_start"]))).days
    except (KeyError, TypeError, ValueError):
        return None


def _performance_report(labelled: pd.DataFrame, label_values: np.ndarray, spec: "DatasetSpec",
                        sample_rows: int):
    """Evidently's performance preset of the task on the labelled rows (a seeded sample of them):
    (snapshot, rows shown). Current only: the reference rows are the champion's own training
    rows, where its performance is optimistic; the comparison point is its held-out score."""
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    predicted = prediction_column(spec)
    frame = pd.DataFrame({LABEL_COLUMN: label_values, predicted: labelled[predicted].to_numpy()})
    scored = report_sample(frame, [LABEL_COLUMN, predicted], sample_rows).reset_index(drop=True)
    if spec.task == "binary":
        scored[predicted] = scored[predicted].astype(np.float64)
        definition = DataDefinition(numerical_columns=[predicted], categorical_columns=[LABEL_COLUMN],
                                    classification=[BinaryClassification(target=LABEL_COLUMN,
                                                                         prediction_probas=predicted, pos_label=1)])
        preset = ClassificationPreset()
    elif spec.task == "multiclass":
        scored = scored.astype({LABEL_COLUMN: str, predicted: str})
        definition = DataDefinition(categorical_columns=[LABEL_COLUMN, predicted],
                                    classification=[MulticlassClassification(target=LABEL_COLUMN,
                                                                             prediction_labels=predicted)])
        preset = ClassificationPreset()
    else:
        scored = scored.astype(np.float64)
        definition = DataDefinition(numerical_columns=[LABEL_COLUMN, predicted],
                                    regression=[Regression(target=LABEL_COLUMN, prediction=predicted)])
        preset = RegressionPreset()
    snapshot = Report([preset]).run(current_data=Dataset.from_pandas(scored, data_definition=definition),
                                    reference_data=None)
    return snapshot, len(scored)


# ---------------------------------------------------------------------------------------- persistence
def _as_utc(value: datetime | date, what: str) -> datetime:
    if isinstance(value, datetime):
        # a naive datetime is a data-interval bound in UTC, as Airflow's are
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc)
    raise ValueError(f"{what} must be a datetime, got {value!r}")


def _window_key(window_start: datetime | date) -> str:
    """The ``window_start`` tag: one spelling per instant, whatever timezone the caller used."""
    start = _as_utc(window_start, "window_start")
    return datetime(start.year, start.month, start.day, start.hour, start.minute, start.second,
                    start.microsecond, tzinfo=timezone.utc).isoformat()


def _reports_folder(settings: "Settings", window_start: datetime | date):
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(settings.reports)
    day = _as_utc(window_start, "window_start").date().isoformat()
    return filesystem, f"{root.rstrip('/')}/drift/{day}"


def _is_local(filesystem) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(filesystem, LocalFileSystem)


def _put_atomically(filesystem, source: Path, target: str) -> None:
    if _is_local(filesystem):
        target_path = Path(target)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target_path.parent, prefix=f".{target_path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            shutil.copyfile(source, temp_name)
            os.replace(temp_name, target_path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    else:
        # one object PUT: readers of an object store see the old object or the new one, never a part
        filesystem.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        filesystem.put_file(str(source), target)


def _shown(filesystem, path: str) -> str:
    return path if _is_local(filesystem) else filesystem.unstrip_protocol(path)


def _metric_key(*parts: str) -> str:
    # MLflow metric keys allow letters, digits, '_', '-', '.', ' ', '/'
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", ".".join(parts))


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {
        "drift_share": metrics["drift_share"],
        "drifted_columns": len(metrics["drifted_columns"]),
        "prediction_drift_score": metrics["prediction_drift"]["drift_score"],
        "prediction_drifted": float(metrics["prediction_drift"]["drifted"]),
        "rows": metrics["rows"],
        "labelled_rows": metrics["labelled_rows"],
    }
    for name, result in metrics["columns"].items():
        flat[_metric_key("drift_score", name)] = result["drift_score"]
    # logged under the metric's own name (e.g. roc_auc, reference_roc_auc), as the gate's are
    metric = metrics.get("metric", "score")
    for key, name in (("score", metric), ("reference_score", f"reference_{metric}"),
                      ("performance_drop", "performance_drop")):
        if metrics.get(key) is not None:
            flat[name] = metrics[key]
    return {key: float(value) for key, value in flat.items()}


def _find_runs(client, experiment_id: str, window_key: str) -> list:
    from mlflow.entities import ViewType

    return client.search_runs([experiment_id], filter_string=f"tags.{WINDOW_START_TAG} = '{window_key}'",
                              run_view_type=ViewType.ACTIVE_ONLY,
                              order_by=["attributes.start_time ASC", "attributes.run_id ASC"])


def _window_run(client, experiment_id: str, window_key: str, run_name: str):
    """The one run of this window: found, or created; a concurrent twin is folded into the oldest."""
    runs = _find_runs(client, experiment_id, window_key)
    if not runs:
        created = client.create_run(experiment_id, run_name=run_name, tags={WINDOW_START_TAG: window_key})
        runs = _find_runs(client, experiment_id, window_key) or [created]
    keep, *extra = runs
    for duplicate in extra:
        # two writers raced past the search above: both keep the oldest, the others go
        client.delete_run(duplicate.info.run_id)
    return keep


def persist_results(settings: "Settings", window_start: datetime, window_end: datetime, metrics: dict[str, Any],
                    html_path: str | Path) -> dict[str, str]:
    """Store one window's report and metrics, replacing whatever an earlier attempt stored.

    ``<reports>/drift/<window start date>/`` gets ``report.html`` and ``metrics.json``;
    the ``drift_monitoring`` experiment gets exactly one run per window (found by its
    ``window_start`` tag and overwritten). Descriptive values are tags, not params:
    MLflow refuses to change a logged param, and a re-run after the champion moved
    must be able to record the new champion version.
    """
    import mlflow
    from mlflow.entities import Metric, RunTag

    from include import tracking

    html_path = Path(html_path)
    if not html_path.is_file():
        raise FileNotFoundError(f"drift report {html_path} does not exist")
    start, end = _as_utc(window_start, "window_start"), _as_utc(window_end, "window_end")
    if start >= end:
        raise ValueError(f"window_start {start.isoformat()} must be before window_end {end.isoformat()}")
    window_key = _window_key(start)
    document = {"window_start": window_key, "window_end": _window_key(end), **metrics}
    metrics_text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)

    filesystem, folder = _reports_folder(settings, start)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as staging:
        staged_html, staged_json = Path(staging, REPORT_HTML), Path(staging, METRICS_JSON)
        shutil.copyfile(html_path, staged_html)
        staged_json.write_text(metrics_text, encoding="utf-8")
        _put_atomically(filesystem, staged_html, f"{folder}/{REPORT_HTML}")
        _put_atomically(filesystem, staged_json, f"{folder}/{METRICS_JSON}")

        experiment_id = tracking.ensure_experiment(settings, DRIFT_EXPERIMENT)
        client = mlflow.MlflowClient()
        run = _window_run(client, experiment_id, window_key, f"drift {start.date().isoformat()}")
        run_id = run.info.run_id
        flat = _flat_metrics(metrics)
        # a value the earlier attempt logged but this one has not (e.g. labels gone) must not linger
        stale = sorted(set(run.data.metrics) - set(flat))
        timestamp = int(datetime.now(timezone.utc).timestamp() * 1000)
        logged = [Metric(key, value, timestamp, 0) for key, value in flat.items()]
        logged += [Metric(key, float("nan"), timestamp, 0) for key in stale]
        reference = metrics["reference_data"]
        tags = {
            WINDOW_START_TAG: window_key, "window_end": _window_key(end),
            "model_name": settings.model_name, "champion_version": metrics["champion_version"],
            "reference_data.path": reference["path"], "reference_data.md5": reference["md5"],
            "reference_data.rev": reference["rev"],
            "drifted_columns": ", ".join(metrics["drifted_columns"]) or "none",
            "drift_share_threshold": repr(metrics.get("drift_share_threshold")),
            "performance_drop_threshold": repr(metrics.get("performance_drop_threshold")),
            "performance_note": metrics.get("performance_note", ""),
            **{_metric_key("drift_method", name): result["method"] for name, result in metrics["columns"].items()},
            "drift_method.prediction": metrics["prediction_drift"]["method"],
        }
        # MLflow takes at most 1000 metrics per batch; a dataset with more columns is split
        for offset in range(0, max(len(logged), 1), 1000):
            client.log_batch(run_id, metrics=logged[offset:offset + 1000],
                             tags=[RunTag(key, str(value)) for key, value in tags.items()] if offset == 0 else [])
        client.log_artifacts(run_id, staging)
        client.set_terminated(run_id, "FINISHED")
    paths = {"report_html": _shown(filesystem, f"{folder}/{REPORT_HTML}"),
             "metrics_json": _shown(filesystem, f"{folder}/{METRICS_JSON}"),
             "mlflow_run_id": run_id}
    log.info("drift results for window %s: %s", window_key, json.dumps(paths))
    return paths


def record_decision(settings: "Settings", window_start: datetime, decision: dict[str, Any]) -> str:
    """Tag the window's run with the retraining decision; returns the run id."""
    import mlflow

    from include import tracking

    for key in ("outcome", "reason", "retrain"):
        if key not in decision:
            raise ValueError(f"decision is missing {key!r} (got keys {sorted(decision)})")
    window_key = _window_key(window_start)
    experiment_id = tracking.ensure_experiment(settings, DRIFT_EXPERIMENT)
    client = mlflow.MlflowClient()
    runs = _find_runs(client, experiment_id, window_key)
    if not runs:
        raise DriftRunNotFound(f"no {DRIFT_EXPERIMENT} run for the window starting {window_key}: "
                               f"the drift check must persist its results first")
    run_id = runs[0].info.run_id
    triggered = decision.get("retrain_triggered", decision["retrain"])
    client.set_tag(run_id, "decision", str(decision["outcome"]))
    client.set_tag(run_id, "decision.reason", str(decision["reason"])[:4000])
    client.set_tag(run_id, "retrain_triggered", str(bool(triggered)).lower())
    return run_id


# ---------------------------------------------------------------------------------------- the whole step
def check_drift(settings: "Settings", spec: "DatasetSpec", window_start: datetime, window_end: datetime, *,
                min_rows: int, drift_share_threshold: float, performance_drop_threshold: float,
                window_days: int = 1) -> dict[str, Any]:
    """The nightly step for ``[window_start, window_end)``: read, check, compare, persist.

    With ``window_days`` above 1 the traffic compared is that of the ``window_days``
    days ending at ``window_end`` (for a model that serves a few rows a day); the
    results are still kept under ``window_start``, the run's own window.
    Returns ``{"status": "insufficient_data", "rows", "reason"}`` (nothing written)
    or ``{"status": "ok", **metrics, "report_html", "metrics_json", "mlflow_run_id"}``.
    """
    from datetime import timedelta

    from include.monitoring.inference_log import read_window

    start, end = _as_utc(window_start, "window_start"), _as_utc(window_end, "window_end")
    if start >= end:
        raise ValueError(f"window_start {start.isoformat()} must be before window_end {end.isoformat()}")
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 1:
        raise ValueError(f"window_days must be an integer >= 1, got {window_days!r}")
    # plain datetimes: Airflow hands in pendulum ones, whose arithmetic may drop the zone
    traffic_start = datetime.fromtimestamp(end.timestamp(), timezone.utc) - timedelta(days=window_days)
    if traffic_start.timestamp() > start.timestamp():
        traffic_start = start
    current = read_window(settings.inference_log, traffic_start, end, with_labels=True)
    verdict = check_window(current, spec, min_rows)
    if not verdict.ok:
        log.info("window %s..%s: insufficient data: %s", start.isoformat(), end.isoformat(), verdict.reason)
        return {"status": verdict.status, "rows": verdict.rows, "reason": verdict.reason}
    reference = reference_for_champion(settings, spec)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-report-") as staging:
        html_path = Path(staging, REPORT_HTML)
        metrics = run_drift_check(current, reference, spec, drift_share_threshold=drift_share_threshold,
                                  performance_drop_threshold=performance_drop_threshold, html_path=html_path)
        paths = persist_results(settings, start, end, metrics, html_path)
    log.info("window %s..%s: drift share %.2f (%s), prediction drift %.4f, %s %s, drop %s",
             start.isoformat(), end.isoformat(), metrics["drift_share"], ", ".join(metrics["drifted_columns"]) or
             "no drifted column", metrics["prediction_drift"]["drift_score"], metrics["metric"], metrics["score"],
             metrics["performance_drop"])
    return {"status": "ok", **metrics, **paths}
