"""The drift check's HTML page: Evidently's reports drawn from a seeded sample, with the exact figures on top.

The figures of record are computed on every row (:mod:`include.monitoring.drift`);
Evidently only draws the page, from at most :data:`REPORT_SAMPLE_ROWS` rows per side
(:func:`report_sample`), because its own report on a million rows per side takes
minutes and gigabytes. The page says so, and shows the exact per-column figures
beside Evidently's sampled ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring.reference import LABEL_COLUMN, _prediction_is_numeric, prediction_column

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

# rows per side the Evidently report is drawn from; the figures of record use every row
REPORT_SAMPLE_ROWS = 5_000
REPORT_SAMPLE_SEED = 20_240_301
# a column that has values in the data but none in the sample gets this many rows that have one
REPORT_SAMPLE_TOP_UP_ROWS = 50


def _comparable(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Features and prediction typed alike on both sides: numerics float64, categoricals str or None."""
    from include.data.cast import categorical_column, numeric_column

    columns = {}
    for name in spec.numeric_features:
        columns[name] = numeric_column(frame[name], name)
    for name in spec.categorical_features:
        columns[name] = categorical_column(frame[name], name)
    predicted = prediction_column(spec)
    columns[predicted] = (
        numeric_column(frame[predicted], predicted)
        if _prediction_is_numeric(spec)
        else categorical_column(frame[predicted], predicted)
    )
    return pd.DataFrame(columns)


def _measurable(values: pd.Series) -> np.ndarray:
    """Which rows of a column a drift statistic can use: present and, if numeric, finite."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        array = values.to_numpy()
        if array.dtype.kind != "f":
            array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.isfinite(array)
    return values.notna().to_numpy()


def report_sample(
    frame: pd.DataFrame, columns: list[str], rows: int = REPORT_SAMPLE_ROWS, seed: int = REPORT_SAMPLE_SEED
) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame`` (all of it when it is no larger), drawn with a fixed seed.

    A column that has measurable values in ``frame`` keeps some in the sample: rows
    that have one are added when the draw has none, since Evidently refuses to plot a
    column with no value. The sample only draws the report; no figure of record comes from it.

    Returns ``frame`` itself when it has at most ``rows`` rows, else a subset of its
    rows in their original order: ``rows`` of them, plus up to
    :data:`REPORT_SAMPLE_TOP_UP_ROWS` per topped-up column. Raises ``KeyError`` for
    a name in ``columns`` that ``frame`` lacks.
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
            extra = generator.choice(candidates, size=min(REPORT_SAMPLE_TOP_UP_ROWS, len(candidates)), replace=False)
            chosen = np.union1d(chosen, extra)
    return frame.iloc[chosen]


def _drift_snapshot(
    current_sample: pd.DataFrame,
    reference_sample: pd.DataFrame,
    spec: DatasetSpec,
    plans: dict[str, Any],
    numeric: set[str],
):
    """Evidently's drift report of the samples, one ValueDrift per measured column (``plans``: column to
    :class:`~include.monitoring.columns.ColumnPlan`). Evidently judges each at the column's fixed
    threshold, or at its default 0.1 for a calibrated column (the page's table has the verdicts of record)."""
    from include.monitoring.columns import FIXED_THRESHOLD

    methods = {
        name: (plan.method, FIXED_THRESHOLD if plan.threshold is None else plan.threshold)
        for name, plan in plans.items()
    }
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[name for name in methods if name in numeric],
        categorical_columns=[name for name in methods if name not in numeric],
    )
    # one ValueDrift per column (its distributions and test): DataDriftPreset would add a table
    # of the same columns, which the page already has with the exact figures, at twice the cost
    report = Report(
        [ValueDrift(column=name, method=method, threshold=threshold) for name, (method, threshold) in methods.items()],
        include_tests=True,
    )
    return report.run(
        current_data=Dataset.from_pandas(_comparable(current_sample, spec), data_definition=definition),
        reference_data=Dataset.from_pandas(_comparable(reference_sample, spec), data_definition=definition),
    )


def _sample_note(sample: dict[str, Any]) -> str:
    shown = (
        f"{sample['current_rows']} of the window's {sample['current_rows_total']} rows and "
        f"{sample['reference_rows']} of the reference's {sample['reference_rows_total']} rows"
    )
    if sample["sampled"]:
        return (
            f"The Evidently report below is drawn from a seeded sample (seed {sample['seed']}): {shown}. "
            f"Its per-column scores and verdicts are those of the sample, judged at Evidently's fixed "
            f"thresholds; the figures of record, above and in metrics.json, are computed on all rows."
        )
    return (
        f"The Evidently report below is drawn from all rows: {shown}. Its verdicts use Evidently's fixed "
        f"thresholds; the verdicts of record are in the table above."
    )


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
        f"{metrics['rows']} served predictions judged ({metrics['labelled_rows']} labelled) against the "
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
        column_names=["column", "method", "rows judged", "drift score", "threshold", "judged by", "drifted"],
        data=[
            [
                name,
                result["method"],
                str(result.get("rows")),
                f"{result['drift_score']:.6f}",
                f"{result['threshold']:.4g}",
                result.get("judged_by", "fixed"),
                "yes" if result["drifted"] else "no",
            ]
            for name, result in [*metrics["columns"].items(), (metrics["prediction_column"], prediction)]
        ],
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
    page = SnapshotModel(
        report=drift.report,
        name=drift.name,
        timestamp=drift.timestamp,
        metadata=drift.metadata,
        tags=drift.tags,
        metric_results=metric_results,
        top_level_metrics=top_level,
        widgets=widgets,
        tests_widgets=drift.tests_widgets,
    )
    return Snapshot.load_model(page).get_html_str(as_iframe=False)


def _performance_report(labelled: pd.DataFrame, label_values: np.ndarray, spec: DatasetSpec, sample_rows: int):
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
        definition = DataDefinition(
            numerical_columns=[predicted],
            categorical_columns=[LABEL_COLUMN],
            classification=[BinaryClassification(target=LABEL_COLUMN, prediction_probas=predicted, pos_label=1)],
        )
        preset = ClassificationPreset()
    elif spec.task == "multiclass":
        scored = scored.astype({LABEL_COLUMN: str, predicted: str})
        definition = DataDefinition(
            categorical_columns=[LABEL_COLUMN, predicted],
            classification=[MulticlassClassification(target=LABEL_COLUMN, prediction_labels=predicted)],
        )
        preset = ClassificationPreset()
    else:
        scored = scored.astype(np.float64)
        definition = DataDefinition(
            numerical_columns=[LABEL_COLUMN, predicted],
            regression=[Regression(target=LABEL_COLUMN, prediction=predicted)],
        )
        preset = RegressionPreset()
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(scored, data_definition=definition), reference_data=None
    )
    return snapshot, len(scored)
