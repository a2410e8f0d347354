"""``benchmarks/RESULTS.md`` from the saved results of each section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_MD, load

MIB = 2**20


def _yes(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _missing(section: str) -> list[str]:
    return [f"*Not measured: the `{section}` section did not complete (see the output of `make bench`).*", ""]


# ------------------------------------------------------------------------------------------ sections
def machine_section(machine: dict | None) -> list[str]:
    if machine is None:
        return _missing("machine")
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    load_average = machine.get("load_average")
    rows = [
        ["CPU", f"{machine['cpu']}, {machine['cores']} cores available"],
        ["Memory", f"{machine['memory_gib']} GiB"],
        ["GPU", machine["gpu"] or "none (no GPU on this machine)"],
        ["OS / Python", f"{machine['os']} / Python {machine['python']}"],
        ["Libraries", versions],
        ["Load average when started", ", ".join(f"{value:.2f}" for value in load_average) if load_average else "n/a"],
        ["Started", machine["started_at"]],
    ]
    return ["## Machine", "", *_table(["", ""], rows), ""]


def parse_section(parse: dict | None) -> tuple[list[str], list[list[Any]], list[str]]:
    target = "≤ 50 ms, no ML module"
    if parse is None:
        return (
            _missing("parse"),
            [["DAG parse, each file, above `import airflow.sdk`", target, "not measured", "**missed**"]],
            [],
        )
    rows = [
        [
            f"`{f['dag_file']}`",
            f"{f['parse_ms']:.1f}",
            f"{f['processor_parse_ms']:.1f}",
            f"{f['process_ms']:.0f}",
            f["modules"],
            ", ".join(f["ml_modules"]) or "none",
            f"{f['top_level_parse_ms']:.0f}",
            ", ".join(f["top_level_ml_modules"]) or "none",
            f"{f['ratio']:.1f}x",
        ]
        for f in parse["files"]
    ]
    rows.append(
        [
            "Airflow's one-`@task` DAG, for scale",
            f"{parse['minimal_dag_ms']:.1f}",
            f"{parse['minimal_dag_processor_ms']:.1f}",
            "",
            parse["minimal_dag_modules"],
            "none",
            "",
            "",
            "",
        ]
    )
    lines = [
        "## DAG parse cost",
        "",
        f"Median of {parse['runs']} fresh interpreters per file, bytecode caches warm (as a dag-processor that "
        "re-parses a file has them). **Parse cost** is the time to execute the DAG file in an interpreter that "
        "has already imported `airflow.sdk` (what every DAG file needs); *in the dag-processor* is the same "
        "clock in an interpreter that also holds what a dag-processor's parsing process holds before it runs "
        "the file (the module of its parse entry point, `airflow.dag_processing.processor`, and the `airflow` "
        "modules the file names, which the processor pre-imports); *process* is the wall time from starting the "
        f"interpreter to the parsed DAG, next to a bare `python -c pass` ({parse['bare_interpreter_ms']:.0f} ms) "
        f"and `python -c 'import airflow.sdk'` ({parse['airflow_sdk_process_ms']:.0f} ms). The comparison is the "
        "same DAG with its imports at top level: a copy of the DAG file and of `plugins/mlops_airflow` in which "
        "every import made inside a function (task bodies, operator `execute`) is made when the module loads. "
        "The last row is Airflow's own floor: the smallest DAG in the style of its example DAGs.",
        "",
        *_table(
            [
                "DAG file",
                "parse cost (ms)",
                "in the dag-processor (ms)",
                "process (ms)",
                "modules it loads",
                "ML modules among them",
                "imports at top level (ms)",
                "ML modules then",
                "top level / thin",
            ],
            rows,
        ),
        "",
    ]
    worst = max(parse["files"], key=lambda f: f["parse_ms"])
    worst_processor = max(parse["files"], key=lambda f: f["processor_parse_ms"])
    ml_free = all(not f["ml_modules"] for f in parse["files"])
    met = worst["parse_ms"] <= parse["target_ms"] and ml_free
    summary = [
        [
            "DAG parse, each file, above `import airflow.sdk`",
            target,
            f"{worst['parse_ms']:.1f} ms at most (`{worst['dag_file']}`), "
            f"{'no ML module' if ml_free else 'ML modules loaded'}",
            _yes(met),
        ],
        [
            "DAG parse, each file, in the dag-processor",
            target,
            f"{worst_processor['processor_parse_ms']:.1f} ms at most (`{worst_processor['dag_file']}`)",
            _yes(worst_processor["processor_parse_ms"] <= parse["target_ms"] and ml_free),
        ],
    ]
    notes = []
    if not met:
        note = (
            f"**DAG parse.** `{worst['dag_file']}` takes {worst['parse_ms']:.1f} ms above `import airflow.sdk`, "
            f"of which {parse['minimal_dag_ms']:.0f} ms is what Airflow's own one-task DAG costs (the task "
            "decorators, the timetable and serialization modules the first DAG of a process loads); the rest "
            "grows with the DAG's tasks and params (every task deep-copies the DAG's params several times)."
        )
        if worst["dag_file"].endswith("ml_training.py"):
            note += (
                f" Importing Airflow's human-in-the-loop `ApprovalOperator` (the optional approval step) "
                f"adds {parse['hitl_import_ms']:.0f} ms: its module imports the trigger classes that Airflow "
                "3.3 no longer defers to."
            )
        note += (
            f" In the dag-processor, which has those Airflow modules loaded before it runs a file, the same "
            f"file costs {worst['processor_parse_ms']:.1f} ms. What would remove the rest: the provider "
            "importing its HITL trigger lazily, or a lighter per-task copy of the DAG's params in Airflow."
        )
        notes.append(note)
    return lines, summary, notes


def drift_section(drift: dict | None, quick: bool) -> tuple[list[str], list[list[Any]], list[str]]:
    if drift is None:
        return (
            _missing("drift"),
            [
                [
                    "Drift check, 1M rows x 20 columns",
                    "≥ 20x faster, ≤ 1/4 memory, same verdicts, scores within 0.01",
                    "not measured",
                    "**missed**",
                ]
            ],
            [],
        )
    rows = []
    for size in drift["sizes"]:
        rows.append(
            [
                f"{size['rows']:,} x 20 (+ prediction)",
                size["runs"],
                f"{size['project_seconds']:.2f}",
                f"{size['evidently_seconds']:.1f}",
                f"**{size['speedup']:.1f}x**",
                f"{size['project_peak_added_bytes'] / MIB:.0f}",
                f"{size['evidently_peak_added_bytes'] / MIB:.0f}",
                f"{100 * size['memory_ratio']:.0f} %",
                f"{size['project_peak_rss_bytes'] / MIB:.0f} / {size['evidently_peak_rss_bytes'] / MIB:.0f}",
                f"{size['verdicts_agree']}/{size['columns']}",
                f"{size['max_score_difference']:.1e}",
            ]
        )
    columns = drift["columns"]
    lines = [
        "## Drift check",
        "",
        f"A reference and a window of N rows each: {columns['numeric']} numeric and {columns['categorical']} "
        "categorical features plus the predicted probability (prediction drift), seeded; 8 numeric and 2 "
        "categorical columns drift by graded amounts, some far past the 0.1 threshold, some just past it, "
        "some just short of it. **Project**: `include.monitoring.drift.run_drift_check` (every score on all rows, "
        "the Evidently report drawn from a 5,000-row sample per side, HTML written). **Evidently**: "
        "`Report([DataDriftPreset(...), ValueDrift('probability')]).run(...)` on the full frames and `save_html`, "
        "same methods (Wasserstein, Jensen-Shannon) and thresholds. Each measurement runs in a fresh interpreter "
        "with both frames and the libraries already loaded; *peak memory* is the RSS high-water mark during the "
        "check minus the RSS before it (the inputs and libraries, the same for both, are not counted; the "
        "absolute peaks are in the next column). Ratios are taken within each run, then the median. Verdicts and "
        "scores: the project's per-column results against Evidently's full-data run, 21 columns.",
        "",
        *_table(
            [
                "rows x columns",
                "runs",
                "project (s)",
                "Evidently (s)",
                "speed-up",
                "project peak (MiB)",
                "Evidently peak (MiB)",
                "memory ratio",
                "absolute peak RSS (MiB), project / Evidently",
                "same verdicts",
                "largest score difference",
            ],
            rows,
        ),
        "",
    ]
    summary, notes = [], []
    million = next((size for size in drift["sizes"] if size["rows"] >= 1_000_000), None)
    if million is None:
        summary.append(
            [
                "Drift check, 1M rows x 20 columns",
                "≥ 20x faster, ≤ 1/4 memory, same verdicts, scores within 0.01",
                "not measured (quick mode)" if quick else "not measured",
                "**missed**",
            ]
        )
        return lines, summary, notes
    same = million["verdicts_agree"] == million["columns"]
    summary += [
        [
            "Drift check 1M x 20: speed",
            "≥ 20x faster than Evidently on the full frames",
            f"{million['speedup']:.1f}x ({million['project_seconds']:.2f} s vs {million['evidently_seconds']:.0f} s)",
            _yes(million["speedup"] >= 20),
        ],
        [
            "Drift check 1M x 20: memory",
            "≤ 1/4 of Evidently's peak",
            f"{100 * million['memory_ratio']:.0f} % ({million['project_peak_added_bytes'] / MIB:.0f} MiB vs "
            f"{million['evidently_peak_added_bytes'] / MIB:.0f} MiB)",
            _yes(million["memory_ratio"] <= 0.25),
        ],
        [
            "Drift check 1M x 20: verdicts",
            "identical per column",
            f"{million['verdicts_agree']}/{million['columns']} identical",
            _yes(same),
        ],
        [
            "Drift check 1M x 20: scores",
            "within 0.01 of Evidently's",
            f"largest difference {million['max_score_difference']:.1e}",
            _yes(million["max_score_difference"] <= 0.01),
        ],
    ]
    if million["speedup"] < 20:
        notes.append(
            f"**Drift speed.** {million['speedup']:.1f}x. Most of the project's time goes to sorting each numeric "
            "column of both sides once, for exact Wasserstein distances (numpy sorts a million floats in about "
            "50 ms here), and to Evidently drawing its per-column widgets from the sample (about 0.7 s whatever "
            "the window size); both run on two threads that a busy machine slows down more than Evidently's "
            "single thread. What would remove it: keeping the sorted reference columns per champion version "
            "(the reference is the same every night), which halves the sorting."
        )
    if million["memory_ratio"] > 0.25:
        notes.append(
            f"**Drift memory.** {100 * million['memory_ratio']:.0f} % of Evidently's peak: the exact "
            "scores hold sorted copies of a numeric column per worker thread; fewer worker threads "
            "lower the peak at the cost of time."
        )
    return lines, summary, notes


def orchestration_section(result: dict | None) -> tuple[list[str], list[list[Any]], list[str]]:
    if result is None:
        return _missing("orchestration"), [["Drift-to-retrain latency", "≤ 30 s", "not measured", "**missed**"]], []
    windows = result["drift_windows"]
    rows = [
        ["`ml_training` trigger-to-done (from the trigger to the run's end)", f"{result['wall_seconds']:.1f} s"],
        ["sum of its tasks' own durations", f"{result['task_seconds']:.1f} s ({result['tasks']} tasks ran)"],
        [
            "orchestration overhead",
            f"{result['overhead_seconds']:.1f} s in all, "
            f"**{result['overhead_per_task_seconds']:.2f} s per task**; trigger-to-done is "
            f"{result['ratio']:.2f}x the task time",
        ],
        [
            "drift-to-retrain latency (end of `trigger_retraining` to start of the triggered run's first task)",
            f"**{result['latency_seconds']:.1f} s** median, {result['latency_max_seconds']:.1f} s at most",
        ],
    ]
    lines = [
        "## Orchestration",
        "",
        f"The local profile as `make demo` runs it (api-server, scheduler, dag-processor, triggerer; LocalExecutor, "
        f"SQLite), with a private state folder. Medians over {len(result['training_runs'])} `ml_training` runs "
        f"(the demo's defaults: `torch_mlp`, 10 epochs, 28 days of history): "
        f"{len(result['training_runs']) - len(windows)} triggered through the REST API, {len(windows)} by "
        "drifted `drift_monitor` windows (trigger time: the end of `trigger_retraining`; each followed to its end "
        "before the next window). Task durations are Airflow's own (from the task process's start to its end).",
        "",
        *_table(["", ""], rows),
        "",
    ]
    met = result["latency_max_seconds"] <= 30
    summary = [
        [
            "Drift-to-retrain latency",
            "≤ 30 s",
            f"{result['latency_seconds']:.1f} s median, {result['latency_max_seconds']:.1f} s at most",
            _yes(met),
        ]
    ]
    notes = []
    if not met:
        notes.append(
            "**Drift-to-retrain latency.** The triggered run waits for the scheduler to start it and "
            "for a worker process to parse the DAG file before its first task counts as started; a "
            "shorter scheduler loop and executor heartbeat in the local profile would shorten it."
        )
    return lines, summary, notes


def serving_section(serving: dict | None) -> tuple[list[str], list[list[Any]], list[str]]:
    if serving is None:
        return (
            _missing("serving"),
            [["Serving", "≥ 3x the throughput of `mlflow models serve`, lower p99", "not measured", "**missed**"]],
            [],
        )
    rows = [
        [
            level["concurrency"],
            f"{level['project_throughput']:.0f}",
            f"{level['mlflow_throughput']:.0f}",
            f"**{level['throughput_ratio']:.1f}x**",
            f"{level['project_p50_ms']:.2f}",
            f"{level['mlflow_p50_ms']:.2f}",
            f"{level['project_p99_ms']:.2f}",
            f"{level['mlflow_p99_ms']:.2f}",
        ]
        for level in serving["levels"]
    ]
    lines = [
        "## Serving",
        "",
        f"Both servers serve `{serving['model']}` (the demo model, `{serving['model_type']}`) from the same "
        "tracking store, one process each: the project's `python -m include.serving` as the deploy step starts "
        "it (inference log and metrics on) and `mlflow models serve --env-manager local` (its default, one "
        "uvicorn worker); both run the model with one torch thread (`MLOPS_TORCH_THREADS=1`, the project server's "
        "default). The load generator (`benchmarks/loadgen.py`, its own process) keeps C connections busy, each "
        "sending a one-row `dataframe_split` request as soon as its previous one answered, for "
        f"{serving['seconds']:.0f} s after a {serving['warmup_seconds']:.0f} s warm-up; the servers alternate at "
        f"each level. Medians of {serving['runs']} runs; before measuring, both servers gave the same answer to "
        f"every payload (largest difference {serving['largest_answer_gap']:.1e}).",
        "",
        *_table(
            [
                "concurrency",
                "project (req/s)",
                "mlflow (req/s)",
                "throughput ratio",
                "project p50 (ms)",
                "mlflow p50 (ms)",
                "project p99 (ms)",
                "mlflow p99 (ms)",
            ],
            rows,
        ),
        "",
    ]
    worst = min(serving["levels"], key=lambda level: level["throughput_ratio"])
    lower_p99 = all(level["project_p99_ms"] < level["mlflow_p99_ms"] for level in serving["levels"])
    summary = [
        [
            "Serving throughput",
            "≥ 3x `mlflow models serve` at each concurrency",
            f"{worst['throughput_ratio']:.1f}x at least (c={worst['concurrency']})",
            _yes(worst["throughput_ratio"] >= 3),
        ],
        [
            "Serving p99",
            "lower than `mlflow models serve` at each concurrency",
            "lower at every level" if lower_p99 else "not lower at every level",
            _yes(lower_p99),
        ],
    ]
    notes = []
    if worst["throughput_ratio"] < 3:
        notes.append(
            f"**Serving throughput.** {worst['throughput_ratio']:.1f}x at concurrency "
            f"{worst['concurrency']}: with one request in flight nothing can be batched, so each "
            "request pays the HTTP stack (uvicorn, FastAPI) and the inference log in full."
        )
    return lines, summary, notes


def training_section(training: dict | None) -> list[str]:
    if training is None:
        return _missing("training")
    rows = []
    for result in training["results"]:
        rows.append(
            [
                f"`{result['model_type']}`",
                result["device_name"],
                f"{result['rows']:,}",
                f"{1000 * result['epoch_seconds']:.0f}",
                f"{1000 * result['first_epoch_seconds']:.0f}",
                f"{result['fit_seconds']:.1f}",
                result["fits"],
            ]
        )
    if not training["gpu"]:
        rows.append(["`torch_mlp`", "GPU", "-", "no GPU on this machine", "-", "-", "-"])
    return [
        "## Training",
        "",
        f"Epoch time on the demo data (the train part of 28 days x 400 rows) with the trigger form's defaults "
        f"({training['epochs']} epochs, batch 256; one `sklearn_hgb` epoch is a fixed number of boosting rounds), "
        "as the trainer reports it, without the first epoch (shown apart: it pays one-off warm-up); the whole "
        "fit includes preprocessing. Medians over fits in fresh interpreters.",
        "",
        *_table(["model", "device", "training rows", "epoch (ms)", "first epoch (ms)", "whole fit (s)", "fits"], rows),
        "",
    ]


# ------------------------------------------------------------------------------------------ the page
def render() -> str:
    machine = load("machine")
    quick = bool(machine and machine.get("quick"))
    parse_lines, parse_summary, parse_notes = parse_section(load("parse"))
    drift_lines, drift_summary, drift_notes = drift_section(load("drift"), quick)
    serving_lines, serving_summary, serving_notes = serving_section(load("serving"))
    orchestration_lines, orchestration_summary, orchestration_notes = orchestration_section(load("orchestration"))
    summary = parse_summary + drift_summary + serving_summary + orchestration_summary
    notes = parse_notes + drift_notes + serving_notes + orchestration_notes
    lines = [
        "# Benchmarks",
        "",
        "What the project costs its users, measured against what they would otherwise use. Written by "
        "`make bench` (`python -m benchmarks`); every figure is the median of several runs, every ratio is "
        "taken between two measurements of the same run.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick mode** (`BENCH_QUICK=1`): fewer runs and no million-row drift case. Not a result "
            "to quote: run `make bench` for the table.",
            "",
        ]
    lines += machine_section(machine)
    lines += ["## Targets", "", *_table(["what", "target", "measured", ""], summary), ""]
    if notes:
        lines += ["### What stands in the way", "", *[f"- {note}" for note in notes], ""]
    lines += parse_lines + drift_lines + serving_lines + orchestration_lines + training_section(load("training"))
    lines += [
        "## Reproducing",
        "",
        "```bash",
        "make bench                 # every section (about 20 minutes), then this file",
        "BENCH_QUICK=1 make bench   # a quick look: fewer runs, no million-row case",
        "python -m benchmarks --only serving   # one section (with PYTHONPATH as the Makefile sets it)",
        "```",
        "",
        "Scratch state (MLflow store, Airflow home, results as JSON) goes to `benchmarks/.work/` (git-ignored).",
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path = RESULTS_MD) -> Path:
    path.write_text(render())
    return path
