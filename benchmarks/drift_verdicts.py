"""Drift verdicts, calibrated against fixed: false retrains on windows without drift, and real shifts found.

Every window is scored once by the check's own code
(``include.monitoring.drift.measure_drift``: the same scores on all rows that
``run_drift_check`` computes, without drawing its report) and judged twice
(``judge_columns``): by the spec's default **calibrated** verdict (each column
against its null at the window's size, Bonferroni at ``monitoring.false_alarm_rate``
0.01 over the monitored features) and by the **fixed** one (``monitoring.verdict:
fixed``, Evidently's 0.1 per column). A window asks for a retraining when its drift
share (drifted monitored features / monitored features) is at least 0.3, the
``drift_monitor`` default. A few windows of each case also go through the whole
``run_drift_check``, whose drift shares and drifted columns must be the same.

In-distribution windows (every retraining is a false one):

- **demo**: the demo's first champion (``sklearn_hgb``, 10 epochs, on the train part
  of 50 generated days x 400 rows, seed 7); each window is the first N rows of its
  own undrifted traffic day (seed 11, 500 rows a day, the demo's volume);
- **seattle-weather** (vega-datasets, read from the package): the days of
  2012-2014 are split at random, per window, into reference rows (half) and
  held-out rows; a logistic regression learns the weather class from the
  reference rows; the window is N rows drawn from the held-out ones. A fresh
  split per window keeps the windows independent; random days, not consecutive
  ones, because consecutive days are seasonal;
- **seattle-weather, next year** (not guaranteed undrifted): N days of 2015 against
  a reference of all 2012-2014 days.

Shifts (every retraining is a detection):

- the demo's covariate drift (``DriftConfig("covariate", ...)``), its first drifted
  day at the demo's daily volume, and the detection rate over many drifted days
  at three strengths and each window size;
- seattle-weather's seasons: summer (Jun-Aug) and spring (Mar-May) days against a
  winter (Dec-Feb) reference of every year.

    python -m benchmarks.drift_verdicts         # the section (BENCH_QUICK=1: fewer windows)
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import quick, save
from benchmarks.drift import DRIFT_SHARE_THRESHOLD

if TYPE_CHECKING:
    import pandas as pd

    from include.data.spec import DatasetSpec
    from include.monitoring.reference import Reference

SIZES = (50, 100, 200, 500)
VERDICTS = ("calibrated", "fixed")
CONFIDENCE = 0.95
# the demo (scripts/demo.py): 50 days x 400 rows of history, traffic of 500 rows a day with seed 11
HISTORY_START = date(2026, 1, 1)
HISTORY_DAYS = 50
HISTORY_ROWS_PER_DAY = 400
HISTORY_SEED = 7
TRAFFIC_START = date(2026, 3, 1)
TRAFFIC_ROWS_PER_DAY = 500
TRAFFIC_SEED = 11
DRIFT_DAY = date(2027, 1, 1)
DRIFT_STRENGTHS = (1.0, 0.5, 0.25)
SEATTLE_SEED = 20_261_201
SEATTLE_REFERENCE_YEARS = (2012, 2013, 2014)
SEATTLE_NEXT_YEAR = 2015
WINTER, SPRING, SUMMER = (12, 1, 2), (3, 4, 5), (6, 7, 8)


# ------------------------------------------------------------------------------------------ tallies
def upper_bound(hits: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound of a rate seen as ``hits`` in ``trials``: a float in (0, 1]."""
    from scipy.stats import beta

    if not 0 <= hits <= trials or trials < 1:
        raise ValueError(f"need 0 <= hits <= trials and trials >= 1, got {hits} of {trials}")
    return 1.0 if hits == trials else float(beta.ppf(confidence, hits + 1, trials - hits))


def verdict_of(columns: dict[str, Any], prediction: str) -> dict[str, Any]:
    """What one judged window says (``columns``: column to ColumnDrift, ``prediction`` the prediction column):
    ``drift_share``, ``retrain`` (share >= the threshold), ``any_feature`` (a monitored feature drifted),
    ``prediction`` (the prediction column drifted) and ``drifted`` (the drifted features)."""
    features = [name for name in columns if name != prediction]
    drifted = [name for name in features if columns[name].drifted]
    share = len(drifted) / len(features)
    return {
        "drift_share": share,
        "retrain": share >= DRIFT_SHARE_THRESHOLD,
        "any_feature": bool(drifted),
        "prediction": bool(columns[prediction].drifted),
        "drifted": drifted,
    }


def tally(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, rates and upper bounds over windows' :func:`verdict_of` results."""
    windows = len(verdicts)
    result: dict[str, Any] = {"windows": windows}
    for key in ("retrain", "any_feature", "prediction"):
        hits = sum(bool(verdict[key]) for verdict in verdicts)
        result[key] = hits
        result[f"{key}_rate"] = hits / windows
        result[f"{key}_upper"] = upper_bound(hits, windows)
    result["mean_drift_share"] = sum(verdict["drift_share"] for verdict in verdicts) / windows
    return result


class Judge:
    """Scores windows against one reference once, judges them by both verdicts, keeps a few to verify."""

    def __init__(self, spec: DatasetSpec, reference: Reference):
        from include.data.spec import MonitoringSpec
        from include.monitoring.drift import prediction_column
        from include.monitoring.profile import calibrate

        self.specs = {
            "calibrated": spec,
            "fixed": dataclasses.replace(spec, monitoring=MonitoringSpec(verdict="fixed")),
        }
        if spec.monitoring.verdict != "calibrated":
            raise ValueError(f"the spec's verdict must be the calibrated default, got {spec.monitoring.verdict!r}")
        self.reference = reference
        self.prediction = prediction_column(spec)
        started = time.perf_counter()
        calibrate(reference, spec)
        self.calibrate_seconds = time.perf_counter() - started
        self.verified: list[dict[str, Any]] = []

    def __call__(self, window: pd.DataFrame, verify: bool = False) -> dict[str, dict[str, Any]]:
        """Both verdicts on ``window``; with ``verify``, also checked against the whole ``run_drift_check``."""
        from include.monitoring.drift import judge_columns, measure_drift

        columns, _ = measure_drift(window, self.reference, self.specs["calibrated"])
        verdicts = {
            name: verdict_of(judge_columns(columns, self.reference, spec), self.prediction)
            for name, spec in self.specs.items()
        }
        if verify:
            self.verified.append(self._verify(window, verdicts))
        return verdicts

    def _verify(self, window: pd.DataFrame, verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The same window through the whole ``run_drift_check`` (report drawn, HTML written)."""
        from sklearn.exceptions import UndefinedMetricWarning

        from include.monitoring.drift import run_drift_check

        agree = True
        with tempfile.TemporaryDirectory(prefix="drift-verdicts-") as folder, warnings.catch_warnings():
            # the window's macro-F1 over classes a small window lacks: scikit-learn warns, the check goes on
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            for name, spec in self.specs.items():
                metrics = run_drift_check(
                    window,
                    self.reference,
                    spec,
                    drift_share_threshold=DRIFT_SHARE_THRESHOLD,
                    performance_drop_threshold=0.05,
                    html_path=Path(folder) / f"{name}.html",
                )
                agree &= (
                    metrics["drift_share"] == verdicts[name]["drift_share"]
                    and metrics["drifted_columns"] == verdicts[name]["drifted"]
                    and metrics["prediction_drift"]["drifted"] == verdicts[name]["prediction"]
                )
        return {"rows": len(window), "agree": agree}


def _sized(judge: Judge, windows: dict[int, list[pd.DataFrame]], verify: int) -> list[dict[str, Any]]:
    """Tallies per window size (``windows``: size to its frames); the first ``verify`` of each size verified."""
    rows = []
    for size, frames in windows.items():
        verdicts = [judge(frame, verify=index < verify) for index, frame in enumerate(frames)]
        rows.append({"rows": size, **{name: tally([v[name] for v in verdicts]) for name in VERDICTS}})
    return rows


def _progress(what: str, started: float) -> None:
    print(f"  drift verdicts: {what} ({time.perf_counter() - started:.0f}s)", flush=True)


# ------------------------------------------------------------------------------------------ the demo
def demo_spec() -> DatasetSpec:
    from include.data.spec import load_spec
    from include.settings import PROJECT_ROOT

    return load_spec(PROJECT_ROOT / "include/datasets/customer_churn.yaml")


def demo_champion(spec: DatasetSpec):
    """The demo's first champion: ``sklearn_hgb`` with the trigger form's defaults on 50 days x 400 rows."""
    from include.simulation.champion import fit_champion
    from include.simulation.generate import generate_days

    history = generate_days(spec, HISTORY_START, HISTORY_DAYS, HISTORY_ROWS_PER_DAY, HISTORY_SEED)
    return fit_champion(spec, history, epochs=10, learning_rate=0.1)


def demo_days(spec: DatasetSpec, model, start: date, days: int, drift=None) -> list[pd.DataFrame]:
    """``days`` served traffic days from ``start`` (the demo's volume and seed), one frame each."""
    from include.simulation.champion import served_window
    from include.simulation.generate import generate_days

    served = served_window(spec, model, generate_days(spec, start, days, TRAFFIC_ROWS_PER_DAY, TRAFFIC_SEED, drift))
    return [
        served.iloc[day * TRAFFIC_ROWS_PER_DAY : (day + 1) * TRAFFIC_ROWS_PER_DAY].reset_index(drop=True)
        for day in range(days)
    ]


def demo_section(windows: int, drifted_windows: int, verify: int) -> dict[str, Any]:
    from include.simulation.generate import DriftConfig

    started = time.perf_counter()
    spec = demo_spec()
    model, reference = demo_champion(spec)
    judge = Judge(spec, reference)
    _progress(f"demo champion fitted and calibrated in {judge.calibrate_seconds:.1f}s", started)
    days = demo_days(spec, model, TRAFFIC_START, windows)
    undrifted = _sized(judge, {size: [day.iloc[:size] for day in days] for size in SIZES}, verify)
    _progress(f"demo: {windows} undrifted windows per size", started)

    first = demo_days(spec, model, DRIFT_DAY, 1, DriftConfig("covariate", DRIFT_DAY, 1.0))[0]
    first_day = judge(first, verify=True)
    covariate = []
    for strength in DRIFT_STRENGTHS:
        drifted = demo_days(spec, model, DRIFT_DAY, drifted_windows, DriftConfig("covariate", DRIFT_DAY, strength))
        for row in _sized(judge, {size: [day.iloc[:size] for day in drifted] for size in SIZES}, verify):
            covariate.append({"strength": strength, **row})
    _progress(f"demo: covariate drift, {drifted_windows} windows per strength and size", started)
    return {
        "reference_rows": len(reference.frame),
        "holdout_roc_auc": reference.holdout_score,
        "monitored_features": len(spec.feature_names),
        "calibrate_seconds": judge.calibrate_seconds,
        "undrifted": undrifted,
        "first_drifted_day": {"rows": len(first), "day": DRIFT_DAY.isoformat(), **first_day},
        "covariate": covariate,
        "verified": judge.verified,
        "seconds": time.perf_counter() - started,
    }


# ------------------------------------------------------------------------------------------ seattle-weather
def seattle_frame() -> pd.DataFrame:
    """vega-datasets' seattle-weather as the package carries it (nothing is downloaded)."""
    from vega_datasets import local_data

    return local_data.seattle_weather()


def seattle_spec() -> DatasetSpec:
    from include.data.spec import load_spec
    from include.settings import PROJECT_ROOT

    return load_spec(PROJECT_ROOT / "include/datasets/seattle_weather.yaml")


def weather_model(spec: DatasetSpec, rows: pd.DataFrame):
    """A logistic regression (standardised inputs) of the weather class on the spec's features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        rows[spec.feature_names].to_numpy(), rows[spec.target].to_numpy()
    )


def weather_served(spec: DatasetSpec, model, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` as the check sees them: the model's input, what the server answers for a multiclass model
    (``prediction``, its ``probability`` and ``probability_<class>`` for every class) and the label."""
    import numpy as np

    from include.monitoring.reference import LABEL_COLUMN
    from include.training.model import as_model_input

    frame = as_model_input(rows, spec).reset_index(drop=True)
    learned = model.predict_proba(frame[spec.feature_names].to_numpy())
    probabilities = np.zeros((len(frame), len(spec.classes)))
    for index, name in enumerate(model.classes_):
        probabilities[:, spec.classes.index(str(name))] = learned[:, index]
    frame["prediction"] = np.asarray(spec.classes, dtype=object)[probabilities.argmax(axis=1)]
    frame["probability"] = probabilities.max(axis=1)
    for index, name in enumerate(spec.classes):
        frame[f"probability_{name}"] = probabilities[:, index]
    frame[LABEL_COLUMN] = rows[spec.target].to_numpy()
    return frame


def weather_reference(spec: DatasetSpec, rows: pd.DataFrame, what: str) -> tuple[Any, Reference]:
    from include.monitoring.reference import Reference

    model = weather_model(spec, rows)
    reference = Reference(
        frame=weather_served(spec, model, rows),
        model_version="benchmark",
        holdout_score=None,
        metric="macro_f1",
        data_ref={"path": f"vega_datasets seattle-weather, {what}", "md5": "-", "rev": "-"},
    )
    return model, reference


def in_months(frame: pd.DataFrame, months: tuple[int, ...]) -> pd.DataFrame:
    return frame[frame["date"].dt.month.isin(months)]


def seattle_section(splits: int, windows: int, verify: int) -> dict[str, Any]:
    import numpy as np

    started = time.perf_counter()
    spec, frame = seattle_spec(), seattle_frame()
    generator = np.random.default_rng(SEATTLE_SEED)

    # in distribution: a fresh random split of 2012-2014 per window
    period = frame[frame["date"].dt.year.isin(SEATTLE_REFERENCE_YEARS)].reset_index(drop=True)
    half = len(period) // 2
    sizes = [size for size in SIZES if size <= len(period) - half]
    verdicts: dict[int, list[dict[str, dict[str, Any]]]] = {size: [] for size in sizes}
    calibrate_seconds, verified = [], []
    for split in range(splits):
        order = generator.permutation(len(period))
        model, reference = weather_reference(spec, period.iloc[order[:half]], "a random half of 2012-2014")
        judge = Judge(spec, reference)
        calibrate_seconds.append(judge.calibrate_seconds)
        held_out = period.iloc[order[half:]]
        for size in sizes:
            chosen = held_out.iloc[generator.choice(len(held_out), size=size, replace=False)]
            verdicts[size].append(judge(weather_served(spec, model, chosen), verify=split < verify))
        verified += judge.verified
    in_distribution = [
        {"rows": size, **{name: tally([v[name] for v in verdicts[size]]) for name in VERDICTS}} for size in sizes
    ]
    _progress(f"seattle-weather: {splits} random splits of 2012-2014", started)

    # next year: 2015 days against all of 2012-2014
    next_year = frame[frame["date"].dt.year == SEATTLE_NEXT_YEAR]
    model, reference = weather_reference(spec, period, "2012-2014")
    judge = Judge(spec, reference)
    later = _sized(
        judge,
        {
            size: [weather_served(spec, model, next_year.sample(size, random_state=generator)) for _ in range(windows)]
            for size in SIZES
            if size <= len(next_year)
        },
        verify,
    )
    verified += judge.verified

    # seasons: spring and summer days against a winter reference (every year)
    winter = in_months(frame, WINTER)
    model, reference = weather_reference(spec, winter, "Dec-Feb 2012-2015")
    judge = Judge(spec, reference)
    seasonal = []
    for season, months in (("summer (Jun-Aug)", SUMMER), ("spring (Mar-May)", SPRING)):
        days = in_months(frame, months)
        for row in _sized(
            judge,
            {
                size: [weather_served(spec, model, days.sample(size, random_state=generator)) for _ in range(windows)]
                for size in SIZES
                if size <= len(days)
            },
            verify,
        ):
            seasonal.append({"windows_from": season, "available_rows": len(days), **row})
    verified += judge.verified
    _progress("seattle-weather: next year and seasons", started)
    return {
        "period_rows": len(period),
        "reference_rows": half,
        "held_out_rows": len(period) - half,
        "monitored_features": len(spec.feature_names),
        "splits": splits,
        "calibrate_seconds_median": float(np.median(calibrate_seconds)),
        "in_distribution": in_distribution,
        "next_year": {
            "reference_rows": len(period),
            "available_rows": len(next_year),
            "sizes": later,
            "mean_temp_max": {
                "reference": float(period["temp_max"].mean()),
                "next_year": float(next_year["temp_max"].mean()),
            },
        },
        "seasonal": {"reference": "winter (Dec-Feb)", "reference_rows": len(winter), "sizes": seasonal},
        "verified": verified,
        "seconds": time.perf_counter() - started,
    }


# ------------------------------------------------------------------------------------------ the section
def main() -> int:
    from include.monitoring.calibration import DEFAULT_FALSE_ALARM_RATE

    started = time.perf_counter()
    if quick():
        demo = demo_section(windows=100, drifted_windows=50, verify=1)
        seattle = seattle_section(splits=60, windows=50, verify=1)
    else:
        demo = demo_section(windows=1000, drifted_windows=200, verify=1)
        seattle = seattle_section(splits=300, windows=200, verify=1)
    save(
        "drift_verdicts",
        {
            "sizes": list(SIZES),
            "drift_share_threshold": DRIFT_SHARE_THRESHOLD,
            "false_alarm_rate": DEFAULT_FALSE_ALARM_RATE,
            "confidence": CONFIDENCE,
            "demo": demo,
            "seattle": seattle,
            "seconds": time.perf_counter() - started,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
