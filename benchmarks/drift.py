"""Drift check: the project's check against a plain Evidently ``DataDriftPreset`` on the full frames.

The case: a reference and a window (N rows each, or a larger window than reference),
20 feature columns (15 numeric, 5 categorical) plus the model's predicted
probability, seeded. Eight numeric columns and two categorical ones drift by graded
amounts, some well past the 0.1 threshold, some just past it, some just short of it;
the others do not move.

Each measurement runs in a fresh interpreter holding the two frames and the
libraries imported, so that the time and memory are those of the check alone:

- project: ``include.monitoring.drift.run_drift_check`` with the spec's default
  calibrated verdict (scores on all rows, Evidently report drawn from a sample, HTML
  written) on a reference without its monitoring profile, so the check calibrates
  each column's null distribution first (a champion's first check);
- profiled: ``include.monitoring.profile.calibrate`` on its own (the per-champion
  precomputation), then the check on the calibrated reference (every later check);
- Evidently: ``Report([DataDriftPreset(...), ValueDrift("probability")]).run(...)``
  on the full frames, then ``save_html``, with the same methods and thresholds; on
  the largest case with a time limit and its address space capped (``RLIMIT_AS``),
  so that running out of either is reported rather than taking the machine.

The project's scores are compared with Evidently's, and judged at Evidently's fixed
0.1 (``monitoring.verdict: fixed``) for the verdict comparison. Peak memory is the
high-water mark of RSS during the check minus RSS just before it (the frames and
libraries are already in memory for both).

    python -m benchmarks.drift                  # the whole section
    python -m benchmarks.drift case --tool profiled --rows 10000000 --reference-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
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


def make_frames(rows: int, seed: int = SEED, reference_rows: int | None = None):
    """The reference (``reference_rows`` rows, default ``rows``) and the window (``rows`` rows): same
    columns, the window drifted as the module says."""
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

    def frame(drifted: bool, rows: int) -> pd.DataFrame:
        columns = {}
        for name in NUMERIC:
            columns[name] = numeric(name, rows, NUMERIC_SHIFTS.get(name, 0.0) if drifted else 0.0)
        for name in CATEGORICAL:
            columns[name] = categorical(rows, CATEGORICAL_SHIFTS.get(name, 0.0) if drifted else 0.0)
        columns["probability"] = generator.beta(2.0, 5.0 if not drifted else 4.0, rows)
        return pd.DataFrame(columns)

    return frame(drifted=False, rows=rows if reference_rows is None else reference_rows), frame(drifted=True, rows=rows)


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
def _vm_size_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmSize")


def limit_address_space(extra_bytes: int) -> int:
    """Cap this process's address space at its current size plus ``extra_bytes`` (``RLIMIT_AS``): an
    allocation past it fails with ``MemoryError`` instead of taking the machine's memory. Returns the cap."""
    import resource

    cap = _vm_size_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


class TimeUp(BaseException):
    """The measured block ran past its time limit (a BaseException: no library's ``except Exception`` keeps it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeUp` in the block once ``seconds`` have passed (``SIGALRM``; main thread only)."""
    if seconds is None:
        yield
        return

    def expire(signum, frame):
        raise TimeUp()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _project_scores(metrics: dict, reference, frame_spec) -> tuple[dict[str, list], list[str]]:
    """``({column: [score, drifted under the fixed 0.1 verdict]}, [columns drifted under the calibrated one])``
    from a check's result: the same scores judged as Evidently judges them, for the comparison."""
    from include.data.spec import MonitoringSpec
    from include.monitoring.drift import judge_columns
    from include.monitoring.records import ColumnDrift

    columns = {**metrics["columns"], "probability": metrics["prediction_drift"]}
    measured = {name: ColumnDrift.from_dict(name, result) for name, result in columns.items()}
    fixed = judge_columns(measured, reference, replace(frame_spec, monitoring=MonitoringSpec(verdict="fixed")))
    scores = {name: [result.drift_score, result.drifted] for name, result in fixed.items()}
    return scores, [name for name, result in measured.items() if result.drifted]


def run_case(
    tool: str,
    rows: int,
    reference_rows: int | None = None,
    memory_limit_bytes: int | None = None,
    time_limit_seconds: float | None = None,
) -> dict:
    """One measurement in this (fresh) interpreter.

    ``project``: the check on a reference without its profile (the calibration included);
    ``profiled``: the per-champion calibration (``profile.calibrate``) timed on its own, then the check
    with that profile; ``evidently``: Evidently's report, with the address space capped at
    ``memory_limit_bytes`` above the process's size and its time at ``time_limit_seconds`` when given
    (running out of either is reported in ``failed``, not raised).
    """
    import evidently  # noqa: F401  (both tools pay the library import before the clock starts)
    import evidently.presets  # noqa: F401
    import scipy.spatial  # noqa: F401
    import sklearn.metrics  # noqa: F401

    reference, current = make_frames(rows, reference_rows=reference_rows)
    result: dict = {"tool": tool, "rows": rows, "reference_rows": len(reference), "failed": None}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as folder:
        html = Path(folder) / "report.html"
        if tool in ("project", "profiled"):
            from include.monitoring.drift import Reference, run_drift_check
            from include.monitoring.profile import calibrate

            frame_spec = spec()
            reference_ = Reference(
                frame=reference,
                model_version="benchmark",
                holdout_score=None,
                data_ref={"path": "benchmark", "md5": "-", "rev": "-"},
            )
            if tool == "profiled":
                with measured() as profile_cost:
                    calibrate(reference_, frame_spec)
                result["calibrate_seconds"] = profile_cost["seconds"]
                result["calibrate_peak_added_bytes"] = profile_cost["peak_added_bytes"]
            with measured() as cost:
                metrics = run_drift_check(
                    current,
                    reference_,
                    frame_spec,
                    html_path=html,
                    drift_share_threshold=DRIFT_SHARE_THRESHOLD,
                    performance_drop_threshold=0.05,
                )
            result["scores"], result["calibrated_drifted"] = _project_scores(metrics, reference_, frame_spec)
            result["drift_share"] = metrics["drift_share"]
        elif tool == "evidently":
            from evidently import DataDefinition, Dataset, Report
            from evidently.metrics import ValueDrift
            from evidently.presets import DataDriftPreset

            definition = DataDefinition(numerical_columns=[*NUMERIC, "probability"], categorical_columns=CATEGORICAL)
            if memory_limit_bytes is not None:
                result["address_space_cap_bytes"] = limit_address_space(memory_limit_bytes)
            snapshot = None
            with measured() as cost, time_limit(time_limit_seconds):
                try:
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
                except MemoryError as error:
                    result["failed"] = f"MemoryError ({error or 'allocation refused'})"
                except TimeUp:
                    result["failed"] = f"did not finish in {time_limit_seconds:.0f} s"
                    result["timed_out_seconds"] = time_limit_seconds
            result["scores"] = _evidently_scores(snapshot.dict()) if snapshot is not None else {}
        else:
            raise ValueError(f"unknown tool {tool!r}")
        result["html_bytes"] = html.stat().st_size if html.exists() else 0
    result.update(
        seconds=cost["seconds"], peak_added_bytes=cost["peak_added_bytes"], peak_rss_bytes=cost["peak_rss_bytes"]
    )
    return result


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


def evidently_case(rows: int, reference_rows: int, cap_seconds: float | None, memory_bytes: int | None) -> dict:
    """Evidently's measurement, or why there is none: ``failed`` says it ran out of its memory, crashed or
    did not finish its check within ``cap_seconds``."""
    args = ["-m", "benchmarks.drift", "case", "--tool", "evidently", "--rows", str(rows)]
    args += ["--reference-rows", str(reference_rows)]
    if memory_bytes is not None:
        args += ["--memory-limit-bytes", str(memory_bytes)]
    if cap_seconds is not None:
        args += ["--time-limit-seconds", str(cap_seconds)]
    # the interpreter also builds the frames and imports the libraries before the check's clock starts
    outer = 1800 if cap_seconds is None else cap_seconds + 600
    try:
        return run_json(args, timeout=outer)
    except subprocess.TimeoutExpired:
        failed = f"did not finish in {outer:.0f} s (frames and imports included)"
        return {"tool": "evidently", "rows": rows, "failed": failed, "timed_out_seconds": outer, "scores": {}}
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1][:300]
        return {"tool": "evidently", "rows": rows, "failed": f"crashed: {last}", "scores": {}}


def bench_size(
    rows: int,
    repetitions: int,
    reference_rows: int | None = None,
    *,
    evidently_cap_seconds: float | None = None,
    evidently_memory_bytes: int | None = None,
) -> dict:
    reference_rows = reference_rows or rows
    measurements = []
    for repetition in range(repetitions):
        # the tools alternate, each in a fresh interpreter; a ratio compares one run's measurements
        evidently = evidently_case(rows, reference_rows, evidently_cap_seconds, evidently_memory_bytes)
        args = ["--rows", str(rows), "--reference-rows", str(reference_rows)]
        project = run_json(["-m", "benchmarks.drift", "case", "--tool", "project", *args])
        profiled = run_json(["-m", "benchmarks.drift", "case", "--tool", "profiled", *args])
        pair = compare(project, evidently) if not evidently["failed"] else None
        line = (
            f"  drift {rows:>10,} rows ({reference_rows:,} reference) run {repetition + 1}/{repetitions}: "
            f"project {project['seconds']:.2f}s {project['peak_added_bytes'] / 2**20:.0f} MiB "
            f"(calibration {profiled['calibrate_seconds']:.2f}s, then the check {profiled['seconds']:.2f}s "
            f"{profiled['peak_added_bytes'] / 2**20:.0f} MiB); Evidently "
        )
        if pair is None:
            line += evidently["failed"]
        else:
            line += (
                f"{evidently['seconds']:.2f}s {evidently['peak_added_bytes'] / 2**20:.0f} MiB; "
                f"{pair['speedup']:.1f}x faster, {evidently['seconds'] / profiled['seconds']:.1f}x with the profile; "
                f"verdicts {pair['verdicts_agree']}/{pair['columns']}, max |score diff| "
                f"{pair['max_score_difference']:.2e}"
            )
        print(line, flush=True)
        measurements.append({"project": project, "profiled": profiled, "evidently": evidently, "comparison": pair})
    compared = [m for m in measurements if m["comparison"] is not None]
    result = {
        "rows": rows,
        "reference_rows": reference_rows,
        "runs": repetitions,
        "project_seconds": median([m["project"]["seconds"] for m in measurements]),
        "project_peak_added_bytes": median([m["project"]["peak_added_bytes"] for m in measurements]),
        "project_peak_rss_bytes": median([m["project"]["peak_rss_bytes"] for m in measurements]),
        "calibrate_seconds": median([m["profiled"]["calibrate_seconds"] for m in measurements]),
        "calibrate_peak_added_bytes": median([m["profiled"]["calibrate_peak_added_bytes"] for m in measurements]),
        "profiled_seconds": median([m["profiled"]["seconds"] for m in measurements]),
        "profiled_peak_added_bytes": median([m["profiled"]["peak_added_bytes"] for m in measurements]),
        "calibrated_drift_share": measurements[0]["project"]["drift_share"],
        "calibrated_drifted_columns": measurements[0]["project"]["calibrated_drifted"],
        "evidently_failed": next((m["evidently"]["failed"] for m in measurements if m["evidently"]["failed"]), None),
        # Evidently ran at least this long where it ran out of time
        "evidently_timed_out_seconds": next(
            (m["evidently"]["timed_out_seconds"] for m in measurements if m["evidently"].get("timed_out_seconds")),
            None,
        ),
        "evidently_address_space_cap_bytes": measurements[0]["evidently"].get("address_space_cap_bytes"),
        "measurements": measurements,
    }
    if compared:
        result.update(
            evidently_seconds=median([m["evidently"]["seconds"] for m in compared]),
            evidently_peak_added_bytes=median([m["evidently"]["peak_added_bytes"] for m in compared]),
            evidently_peak_rss_bytes=median([m["evidently"]["peak_rss_bytes"] for m in compared]),
            speedup=median([m["comparison"]["speedup"] for m in compared]),
            profiled_speedup=median([m["evidently"]["seconds"] / m["profiled"]["seconds"] for m in compared]),
            memory_ratio=median([m["comparison"]["memory_ratio"] for m in compared]),
            verdicts_agree=min(m["comparison"]["verdicts_agree"] for m in compared),
            columns=compared[0]["comparison"]["columns"],
            disagreeing_columns=sorted({c for m in compared for c in m["comparison"]["disagreeing_columns"]}),
            drifted_columns=compared[0]["comparison"]["drifted_columns"],
            max_score_difference=max(m["comparison"]["max_score_difference"] for m in compared),
        )
    return result


# the scale case: a window of ten million rows against a reference of one million
SCALE_ROWS, SCALE_REFERENCE_ROWS = 10_000_000, 1_000_000
EVIDENTLY_CAP_SECONDS = 600
# what Evidently may allocate beyond the process's size with both frames loaded
EVIDENTLY_MEMORY_BYTES = 10 * 2**30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    case = sub.add_parser("case", help="one measurement (run in a fresh interpreter)")
    case.add_argument("--tool", choices=["project", "profiled", "evidently"], required=True)
    case.add_argument("--rows", type=int, required=True)
    case.add_argument("--reference-rows", type=int, help="rows of the reference (default: --rows)")
    case.add_argument("--memory-limit-bytes", type=int, help="Evidently's address space above the process's size")
    case.add_argument("--time-limit-seconds", type=float, help="Evidently's time for the check")
    args = parser.parse_args(argv)
    if args.command == "case":
        result = run_case(args.tool, args.rows, args.reference_rows, args.memory_limit_bytes, args.time_limit_seconds)
        print(json.dumps(result))
        return 0

    if quick():
        sizes = [bench_size(100_000, 1)]
    else:
        sizes = [bench_size(100_000, runs(2)), bench_size(1_000_000, runs(2))]
        sizes.append(
            bench_size(
                SCALE_ROWS,
                1,
                SCALE_REFERENCE_ROWS,
                evidently_cap_seconds=EVIDENTLY_CAP_SECONDS,
                evidently_memory_bytes=EVIDENTLY_MEMORY_BYTES,
            )
        )
    results = {
        "sizes": sizes,
        "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL), "prediction": 1},
        "threshold": THRESHOLD,
        "evidently_cap_seconds": EVIDENTLY_CAP_SECONDS,
        "evidently_memory_bytes": EVIDENTLY_MEMORY_BYTES,
    }
    save("drift", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
