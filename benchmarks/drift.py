"""Drift check: the project's check against a plain Evidently ``DataDriftPreset`` on the full frames.

The case: a reference and a window of N rows each, 20 feature columns (15 numeric,
5 categorical) plus the model's predicted probability, seeded. Eight numeric
columns and two categorical ones drift by graded amounts, some well past the 0.1
threshold, some just past it, some just short of it; the others do not move.

Each measurement runs in a fresh interpreter holding the two frames and the
libraries imported, so that the time and memory are those of the check alone:

- project: ``include.monitoring.drift.run_drift_check`` (scores on all rows,
  Evidently report drawn from a sample, HTML written);
- Evidently: ``Report([DataDriftPreset(...), ValueDrift("probability")]).run(...)``
  on the full frames, then ``save_html``, with the same methods and thresholds.

Peak memory is the high-water mark of RSS during the check minus RSS just before
it (the frames and libraries are already in memory for both).

    python -m benchmarks.drift                  # the whole section
    python -m benchmarks.drift case --tool project --rows 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import measured, median, quick, run_json, runs, save

NUMERIC = [f"num_{index:02d}" for index in range(15)]
CATEGORICAL = [f"cat_{index}" for index in range(5)]
CATEGORIES = [f"level_{index}" for index in range(8)]
SEED = 20_261_101
THRESHOLD = 0.1
DRIFT_SHARE_THRESHOLD = 0.3
# numeric column -> shift of the window's mean, in reference standard deviations
NUMERIC_SHIFTS = {
    "num_00": 0.8,
    "num_01": 0.4,
    "num_02": 0.2,
    "num_03": 0.13,
    "num_04": 0.115,
    "num_05": 0.085,
    "num_06": 0.06,
    "num_07": 0.03,
}
# categorical column -> share of the window's rows moved onto the first two categories
CATEGORICAL_SHIFTS = {"cat_0": 0.3, "cat_1": 0.08}


def make_frames(rows: int, seed: int = SEED):
    """The reference and the window: same columns, the window drifted as the module says."""
    import numpy as np
    import pandas as pd

    generator = np.random.default_rng(seed)
    categories = np.array(CATEGORIES, dtype=object)
    base_mix = np.linspace(1.0, 2.0, len(CATEGORIES))
    base_mix /= base_mix.sum()

    def numeric(name: str, size: int, shift: float) -> np.ndarray:
        index = int(name[-2:])
        kind = index % 4
        if kind == 0:
            values = generator.normal(50.0, 10.0, size) + shift * 10.0
        elif kind == 1:
            values = generator.gamma(2.0, 5.0, size) + shift * 5.0 * np.sqrt(2.0)
        elif kind == 2:
            values = generator.uniform(0.0, 100.0, size) + shift * 100.0 / np.sqrt(12.0)
        else:
            # counts: many ties, as usage and support-call features have
            values = generator.poisson(6.0, size) + np.round(shift * np.sqrt(6.0) * 4) / 4
        return values.astype(np.float64)

    def categorical(size: int, moved: float) -> np.ndarray:
        mix = base_mix * (1.0 - moved)
        mix[:2] += moved / 2
        return categories[generator.choice(len(CATEGORIES), size=size, p=mix / mix.sum())]

    def frame(drifted: bool) -> pd.DataFrame:
        columns = {}
        for name in NUMERIC:
            columns[name] = numeric(name, rows, NUMERIC_SHIFTS.get(name, 0.0) if drifted else 0.0)
        for name in CATEGORICAL:
            columns[name] = categorical(rows, CATEGORICAL_SHIFTS.get(name, 0.0) if drifted else 0.0)
        columns["probability"] = generator.beta(2.0, 5.0 if not drifted else 4.0, rows)
        return pd.DataFrame(columns)

    return frame(drifted=False), frame(drifted=True)


def spec():
    from include.data.spec import DatasetSpec, Feature
    from include.settings import PROJECT_ROOT

    features = tuple(
        [Feature(name, "numeric") for name in NUMERIC]
        + [Feature(name, "categorical", categories=tuple(CATEGORIES)) for name in CATEGORICAL]
    )
    return DatasetSpec(
        name="drift_benchmark",
        location="unused",
        id_column="request_id",
        timestamp_column="timestamp",
        target="label",
        features=features,
        slice_feature="cat_0",
        expectation_suite=PROJECT_ROOT / "include/validation/suites/customer_churn.json",
    )


# ------------------------------------------------------------------------------------------ one case
def run_case(tool: str, rows: int) -> dict:
    """One measurement in this (fresh) interpreter."""
    import evidently  # noqa: F401  (both tools pay the library import before the clock starts)
    import evidently.presets  # noqa: F401
    import scipy.spatial  # noqa: F401
    import sklearn.metrics  # noqa: F401

    reference, current = make_frames(rows)
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as folder:
        html = Path(folder) / "report.html"
        if tool == "project":
            from include.monitoring.drift import Reference, run_drift_check

            frame_spec = spec()
            reference_ = Reference(
                frame=reference,
                model_version="benchmark",
                holdout_score=None,
                data_ref={"path": "benchmark", "md5": "-", "rev": "-"},
            )
            with measured() as cost:
                metrics = run_drift_check(
                    current,
                    reference_,
                    frame_spec,
                    html_path=html,
                    drift_share_threshold=DRIFT_SHARE_THRESHOLD,
                    performance_drop_threshold=0.05,
                )
            columns = {**metrics["columns"], "probability": metrics["prediction_drift"]}
            scores = {name: [result["drift_score"], result["drifted"]] for name, result in columns.items()}
        elif tool == "evidently":
            from evidently import DataDefinition, Dataset, Report
            from evidently.metrics import ValueDrift
            from evidently.presets import DataDriftPreset

            definition = DataDefinition(numerical_columns=[*NUMERIC, "probability"], categorical_columns=CATEGORICAL)
            with measured() as cost:
                snapshot = Report(
                    [
                        DataDriftPreset(
                            columns=[*NUMERIC, *CATEGORICAL],
                            drift_share=DRIFT_SHARE_THRESHOLD,
                            num_method="wasserstein",
                            num_threshold=THRESHOLD,
                            cat_method="jensenshannon",
                            cat_threshold=THRESHOLD,
                        ),
                        ValueDrift(column="probability", method="wasserstein", threshold=THRESHOLD),
                    ],
                    include_tests=True,
                ).run(
                    current_data=Dataset.from_pandas(current, data_definition=definition),
                    reference_data=Dataset.from_pandas(reference, data_definition=definition),
                )
                snapshot.save_html(str(html))
            scores = _evidently_scores(snapshot.dict())
        else:
            raise ValueError(f"unknown tool {tool!r}")
        html_bytes = html.stat().st_size
    return {
        "tool": tool,
        "rows": rows,
        "seconds": cost["seconds"],
        "peak_added_bytes": cost["peak_added_bytes"],
        "peak_rss_bytes": cost["peak_rss_bytes"],
        "html_bytes": html_bytes,
        "scores": scores,
    }


def _evidently_scores(snapshot: dict) -> dict[str, list]:
    verdicts = {}
    for test in snapshot["tests"]:
        params = (test.get("metric_config") or {}).get("params") or {}
        if params.get("type") == "evidently:metric_v2:ValueDrift":
            verdicts[params["column"]] = test["status"] == "FAIL"
    return {
        metric["config"]["column"]: [float(metric["value"]), verdicts[metric["config"]["column"]]]
        for metric in snapshot["metrics"]
        if metric["config"].get("type") == "evidently:metric_v2:ValueDrift"
    }


# ------------------------------------------------------------------------------------------ the section
def compare(project: dict, evidently: dict) -> dict:
    names = sorted(evidently["scores"])
    if sorted(project["scores"]) != names:
        raise RuntimeError(f"the two tools measured different columns: {sorted(project['scores'])} vs {names}")
    differences = {name: abs(project["scores"][name][0] - evidently["scores"][name][0]) for name in names}
    agree = [name for name in names if project["scores"][name][1] == evidently["scores"][name][1]]
    return {
        "columns": len(names),
        "verdicts_agree": len(agree),
        "disagreeing_columns": [name for name in names if name not in agree],
        "drifted_columns": sorted(name for name in names if evidently["scores"][name][1]),
        "max_score_difference": max(differences.values()),
        "max_score_difference_column": max(differences, key=differences.get),
        "speedup": evidently["seconds"] / project["seconds"],
        "memory_ratio": project["peak_added_bytes"] / evidently["peak_added_bytes"],
    }


def bench_size(rows: int, repetitions: int) -> dict:
    measurements = []
    for repetition in range(repetitions):
        # the two tools alternate, each in a fresh interpreter; a ratio compares one pair
        evidently = run_json(["-m", "benchmarks.drift", "case", "--tool", "evidently", "--rows", str(rows)])
        project = run_json(["-m", "benchmarks.drift", "case", "--tool", "project", "--rows", str(rows)])
        pair = compare(project, evidently)
        print(
            f"  drift {rows:>9,} rows run {repetition + 1}/{repetitions}: project {project['seconds']:.2f}s "
            f"{project['peak_added_bytes'] / 2**20:.0f} MiB, Evidently {evidently['seconds']:.2f}s "
            f"{evidently['peak_added_bytes'] / 2**20:.0f} MiB; {pair['speedup']:.1f}x faster, "
            f"verdicts {pair['verdicts_agree']}/{pair['columns']}, max |score diff| "
            f"{pair['max_score_difference']:.2e}",
            flush=True,
        )
        measurements.append({"project": project, "evidently": evidently, "comparison": pair})
    return {
        "rows": rows,
        "runs": repetitions,
        "project_seconds": median([m["project"]["seconds"] for m in measurements]),
        "evidently_seconds": median([m["evidently"]["seconds"] for m in measurements]),
        "project_peak_added_bytes": median([m["project"]["peak_added_bytes"] for m in measurements]),
        "evidently_peak_added_bytes": median([m["evidently"]["peak_added_bytes"] for m in measurements]),
        "project_peak_rss_bytes": median([m["project"]["peak_rss_bytes"] for m in measurements]),
        "evidently_peak_rss_bytes": median([m["evidently"]["peak_rss_bytes"] for m in measurements]),
        "speedup": median([m["comparison"]["speedup"] for m in measurements]),
        "memory_ratio": median([m["comparison"]["memory_ratio"] for m in measurements]),
        "verdicts_agree": min(m["comparison"]["verdicts_agree"] for m in measurements),
        "columns": measurements[0]["comparison"]["columns"],
        "disagreeing_columns": sorted({c for m in measurements for c in m["comparison"]["disagreeing_columns"]}),
        "drifted_columns": measurements[0]["comparison"]["drifted_columns"],
        "max_score_difference": max(m["comparison"]["max_score_difference"] for m in measurements),
        "measurements": measurements,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    case = sub.add_parser("case", help="one measurement (run in a fresh interpreter)")
    case.add_argument("--tool", choices=["project", "evidently"], required=True)
    case.add_argument("--rows", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "case":
        print(json.dumps(run_case(args.tool, args.rows)))
        return 0

    sizes = [(100_000, runs(3)), (1_000_000, runs(2))] if not quick() else [(100_000, 1)]
    results = {
        "sizes": [bench_size(rows, repetitions) for rows, repetitions in sizes],
        "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL), "prediction": 1},
        "threshold": THRESHOLD,
    }
    save("drift", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
