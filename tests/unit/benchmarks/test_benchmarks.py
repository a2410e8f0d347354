"""The benchmark machinery (not the figures): what it compares, how it measures, what the table says."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from benchmarks import common, drift, drift_verdicts, loadgen, parse, report


def test_the_top_level_variant_makes_every_function_import_when_the_module_loads(tmp_path, monkeypatch):
    source = textwrap.dedent('''
        """A DAG-like module."""
        from __future__ import annotations

        import os


        def task_body():
            import colorsys
            from json import dumps as encode
            return colorsys, encode


        class Operator:
            def execute(self):
                from wave import open as wave_open
                return wave_open
    ''')
    hoisted = parse.with_top_level_imports(source)
    module_path = tmp_path / "variant.py"
    module_path.write_text(hoisted)
    for name in ("colorsys", "wave"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    namespace: dict = {"__name__": "variant"}
    exec(compile(hoisted, str(module_path), "exec"), namespace)

    assert hoisted.index("from __future__ import annotations") < hoisted.index("import colorsys")
    assert {"colorsys", "wave"} <= set(sys.modules), "imported when the module loaded, not when called"
    assert namespace["encode"] is json.dumps
    # the module still works as before
    assert namespace["task_body"]()[0] is sys.modules["colorsys"]


def test_the_top_level_variant_survives_an_import_that_only_works_in_a_task():
    hoisted = parse.with_top_level_imports("def task():\n    import module_that_is_not_installed\n")

    exec(compile(hoisted, "variant", "exec"), {})  # no ImportError at load


def test_drift_comparison_counts_verdicts_and_the_largest_score_gap():
    project = {
        "seconds": 2.0,
        "peak_added_bytes": 100,
        "scores": {"a": [0.5, True], "b": [0.05, False], "c": [0.1000001, True]},
    }
    evidently = {
        "seconds": 50.0,
        "peak_added_bytes": 1000,
        "scores": {"a": [0.5, True], "b": [0.0499, False], "c": [0.0999999, False]},
    }

    result = drift.compare(project, evidently)

    assert result["verdicts_agree"] == 2 and result["disagreeing_columns"] == ["c"]
    assert result["max_score_difference"] == pytest.approx(1e-4)
    assert result["speedup"] == 25.0 and result["memory_ratio"] == 0.1
    with pytest.raises(RuntimeError, match="different columns"):
        drift.compare(project, {**evidently, "scores": {"a": [0.5, True]}})


def test_the_drift_case_is_seeded_and_drifts_the_columns_it_names():
    reference, current = drift.make_frames(20_000)
    again, _ = drift.make_frames(20_000)
    smaller, larger = drift.make_frames(30_000, reference_rows=3_000)

    assert len(smaller) == 3_000 and len(larger) == 30_000

    assert reference.equals(again)
    assert list(reference.columns) == [*drift.NUMERIC, *drift.CATEGORICAL, "probability"]
    assert len(drift.NUMERIC) == 15 and len(drift.CATEGORICAL) == 5
    for name in drift.NUMERIC:
        moved = abs(current[name].mean() - reference[name].mean()) / reference[name].std()
        expected = drift.NUMERIC_SHIFTS.get(name, 0.0)
        assert moved == pytest.approx(expected, abs=0.05), name


def test_a_block_past_its_time_limit_is_stopped_and_the_timer_is_gone_afterwards():
    import signal
    import time

    with pytest.raises(drift.TimeUp), drift.time_limit(0.05):
        while True:
            time.sleep(0.01)
    with drift.time_limit(5):
        pass

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_rate_bound_is_clopper_pearsons_one_sided():
    from scipy.stats import binom

    # no event in n trials: the bound solves (1 - p)**n = 0.05
    assert drift_verdicts.upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000))
    # k events: the rate at which k or fewer happen 5 % of the time
    assert binom.cdf(5, 1000, drift_verdicts.upper_bound(5, 1000)) == pytest.approx(0.05)
    assert drift_verdicts.upper_bound(7, 7) == 1.0
    with pytest.raises(ValueError):
        drift_verdicts.upper_bound(3, 2)
    # and the chance of seeing k or more at a rate
    assert report.binomial_tail(0, 300, 0.01) == 1.0
    assert report.binomial_tail(5, 300, 0.01) == pytest.approx(binom.sf(4, 300, 0.01))
    assert report.binomial_tail(30, 1000, 0.01) < 1e-6


def test_a_window_asks_for_a_retraining_from_its_drifted_features_not_its_prediction():
    from include.monitoring.records import ColumnDrift

    def window(drifted: set[str]) -> dict:
        names = ["a", "b", "c", "d", "probability"]
        columns = {name: ColumnDrift(name, "wasserstein", 0.1, 0.2 if name in drifted else 0.05) for name in names}
        return drift_verdicts.verdict_of(columns, "probability")

    quiet, prediction_only, one, two = window(set()), window({"probability"}), window({"a"}), window({"a", "c"})

    assert quiet == {"drift_share": 0.0, "retrain": False, "any_feature": False, "prediction": False, "drifted": []}
    assert prediction_only["prediction"] and not prediction_only["any_feature"] and not prediction_only["retrain"]
    assert one["any_feature"] and not one["retrain"]  # a drift share of 1/4, short of 0.3
    assert two["retrain"] and two["drifted"] == ["a", "c"]

    counted = drift_verdicts.tally([quiet, prediction_only, one, two])
    assert counted["windows"] == 4 and counted["retrain"] == 1 and counted["any_feature"] == 2
    assert counted["prediction"] == 1 and counted["prediction_rate"] == 0.25
    assert counted["retrain_upper"] == pytest.approx(drift_verdicts.upper_bound(1, 4))
    assert counted["mean_drift_share"] == pytest.approx((0 + 0 + 1 / 4 + 2 / 4) / 4)


def test_both_verdicts_of_a_window_are_run_drift_checks_own(tmp_path):
    spec, frame = drift_verdicts.seattle_spec(), drift_verdicts.seattle_frame()
    year = frame[frame["date"].dt.year == 2013]
    model, reference = drift_verdicts.weather_reference(spec, year.iloc[::2], "2013, every other day")
    judge = drift_verdicts.Judge(spec, reference)

    verdicts = judge(drift_verdicts.weather_served(spec, model, year.iloc[1::2].head(60)), verify=True)

    assert set(verdicts) == {"calibrated", "fixed"}
    assert judge.verified == [{"rows": 60, "agree": True}]
    # 60 rows: a fixed 0.1 flags sampling noise that the calibrated verdict does not
    assert verdicts["fixed"]["drift_share"] >= verdicts["calibrated"]["drift_share"]


def test_peak_memory_of_a_block_counts_what_it_allocated():
    import numpy as np

    with common.measured() as cost:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
        del block

    assert cost["peak_added_bytes"] >= 35 * 2**20
    assert cost["peak_rss_bytes"] >= cost["peak_added_bytes"]


def _load_against(handle, path: str, bodies: list[bytes], **load) -> dict:
    """``loadgen.run_load`` against a raw asyncio HTTP server on 127.0.0.1 that answers with ``handle``."""

    async def scenario():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await loadgen.run_load(f"http://127.0.0.1:{port}{path}", bodies, **load)

    return asyncio.run(scenario())


def test_the_load_generator_keeps_c_requests_in_flight_and_reports_percentiles():
    received: list[bytes] = []
    in_flight = {"now": 0, "most": 0}

    async def handle(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            received.append(await reader.readexactly(length))
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
            await asyncio.sleep(0.002)
            in_flight["now"] -= 1
            body = b'{"predictions": []}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    result = _load_against(handle, "/invocations", [b'{"a": 1}', b'{"a": 2}'], concurrency=4, seconds=0.5, warmup=0.1)

    assert result["requests"] > 0 and result["concurrency"] == 4
    assert in_flight["most"] == 4
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert set(received) == {b'{"a": 1}', b'{"a": 2}'}


def test_the_load_generator_fails_on_an_error_answer():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom")
        await writer.drain()
        writer.close()

    with pytest.raises(loadgen.ServerError, match="500"):
        _load_against(handle, "/", [b"{}"], concurrency=1, seconds=0.2, warmup=0)


# ------------------------------------------------------------------------------------------ the table
def _results(
    serving_ratio: float,
    latency: float,
    parse_ms: float = 30.0,
    false_alarms: int = 3,
    scale_seconds: float = 20.0,
    scale_drifted: tuple[str, ...] = ("num_00",),
) -> dict[str, dict]:
    size = {
        "rows": 1_000_000,
        "runs": 1,
        "project_seconds": 3.0,
        "evidently_seconds": 120.0,
        "speedup": 40.0,
        "project_peak_added_bytes": 200 * 2**20,
        "evidently_peak_added_bytes": 1000 * 2**20,
        "project_peak_rss_bytes": 800 * 2**20,
        "evidently_peak_rss_bytes": 1700 * 2**20,
        "memory_ratio": 0.2,
        "verdicts_agree": 21,
        "columns": 21,
        "max_score_difference": 1e-12,
        "reference_rows": 1_000_000,
        "calibrate_seconds": 2.0,
        "calibrate_peak_added_bytes": 50 * 2**20,
        "profiled_seconds": 1.0,
        "profiled_peak_added_bytes": 150 * 2**20,
        "profiled_speedup": 120.0,
        "calibrated_drift_share": 0.45,
        "calibrated_drifted_columns": ["num_00"],
        "evidently_failed": None,
    }
    scale = {
        **size,
        "rows": 10_000_000,
        "project_seconds": scale_seconds,
        "profiled_seconds": scale_seconds / 2,
        "project_peak_added_bytes": 1500 * 2**20,
        "evidently_failed": "did not finish in 600 s",
        "evidently_timed_out_seconds": 600.0,
        "calibrated_drifted_columns": list(scale_drifted),
        **dict.fromkeys(["evidently_seconds", "speedup", "profiled_speedup", "memory_ratio", "verdicts_agree"]),
    }

    def rates(hits: int, windows: int = 1000) -> dict:
        rate = {"windows": windows, "mean_drift_share": hits / windows}
        for key in ("retrain", "any_feature", "prediction"):
            rate |= {key: hits, f"{key}_rate": hits / windows, f"{key}_upper": (hits + 3) / windows}
        return rate

    def sized(calibrated: int, fixed: int, **extra) -> list[dict]:
        return [{"rows": rows, "calibrated": rates(calibrated), "fixed": rates(fixed), **extra} for rows in (50, 500)]

    first = {"drift_share": 0.4, "retrain": True, "any_feature": True, "prediction": True, "drifted": ["plan"]}
    level = {
        "concurrency": 1,
        "project_throughput": 300.0 * serving_ratio,
        "mlflow_throughput": 300.0,
        "throughput_ratio": serving_ratio,
        "project_p50_ms": 1.0,
        "mlflow_p50_ms": 3.0,
        "project_p99_ms": 2.0,
        "mlflow_p99_ms": 9.0,
    }
    return {
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gib": 8.0,
            "gpu": None,
            "os": "Linux",
            "python": "3.11",
            "versions": {"mlflow": "3"},
            "load_average": [0.1, 0.1, 0.1],
            "quick": False,
            "started_at": "today",
        },
        "parse": {
            "runs": 5,
            "target_ms": 50.0,
            "bare_interpreter_ms": 20.0,
            "airflow_sdk_process_ms": 900.0,
            "minimal_dag_ms": 25.0,
            "minimal_dag_modules": 40,
            "minimal_dag_processor_ms": 10.0,
            "hitl_import_ms": 9.0,
            "files": [
                {
                    "dag_file": "dags/ml_training.py",
                    "parse_ms": parse_ms,
                    "process_ms": 950.0,
                    "modules": 50,
                    "ml_modules": [],
                    "top_level_parse_ms": 2000.0,
                    "top_level_process_ms": 3000.0,
                    "top_level_modules": 2000,
                    "top_level_ml_modules": ["numpy"],
                    "ratio": 60.0,
                    "processor_parse_ms": 20.0,
                }
            ],
        },
        "drift": {
            "sizes": [size, scale],
            "columns": {"numeric": 15, "categorical": 5, "prediction": 1},
            "threshold": 0.1,
            "evidently_cap_seconds": 600,
            "evidently_memory_bytes": 12 * 2**30,
        },
        "drift_verdicts": {
            "sizes": [50, 100, 200, 500],
            "drift_share_threshold": 0.3,
            "false_alarm_rate": 0.01,
            "confidence": 0.95,
            "demo": {
                "reference_rows": 16000,
                "holdout_roc_auc": 0.86,
                "monitored_features": 10,
                "calibrate_seconds": 5.0,
                "undrifted": sized(false_alarms, 400),
                "first_drifted_day": {"rows": 500, "day": "2027-01-01", "calibrated": first, "fixed": first},
                "covariate": sized(900, 1000, strength=1.0),
                "verified": [{"rows": 50, "agree": True}],
            },
            "seattle": {
                "period_rows": 1096,
                "reference_rows": 548,
                "held_out_rows": 548,
                "monitored_features": 4,
                "splits": 400,
                "calibrate_seconds_median": 0.2,
                "in_distribution": sized(0, 600),
                "next_year": {
                    "reference_rows": 1096,
                    "available_rows": 365,
                    "sizes": sized(10, 900)[:1],
                    "mean_temp_max": {"reference": 16.1, "next_year": 17.4},
                },
                "seasonal": {
                    "reference": "winter (Dec-Feb)",
                    "reference_rows": 361,
                    "sizes": sized(1000, 1000, windows_from="summer (Jun-Aug)", available_rows=368)[:1],
                },
                "verified": [{"rows": 50, "agree": True}],
            },
        },
        "serving": {
            "model": "models:/m/1",
            "model_type": "torch_mlp",
            "runs": 3,
            "seconds": 10.0,
            "warmup_seconds": 2.0,
            "largest_answer_gap": 0.0,
            "levels": [level],
        },
        "orchestration": {
            "training_runs": [{}],
            "drift_windows": [{}],
            "wall_seconds": 60.0,
            "task_seconds": 50.0,
            "tasks": 8,
            "overhead_seconds": 10.0,
            "overhead_per_task_seconds": 1.25,
            "ratio": 1.2,
            "latency_seconds": latency,
            "latency_max_seconds": latency,
        },
        "training": {
            "gpu": None,
            "epochs": 10,
            "results": [
                {
                    "model_type": "torch_mlp",
                    "device": "cpu",
                    "device_name": "cpu",
                    "rows": 8960,
                    "fits": 3,
                    "epoch_seconds": 0.08,
                    "first_epoch_seconds": 0.1,
                    "fit_seconds": 1.0,
                }
            ],
        },
    }


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)

    def save_all(results: dict[str, dict]) -> None:
        for section, payload in results.items():
            common.save(section, payload)

    return save_all


def _target_row(page: str, what: str) -> str:
    return next(line for line in page.splitlines() if line.startswith(f"| {what}"))


def test_the_table_marks_each_target_met_or_missed_and_explains_a_miss(saved):
    saved(_results(serving_ratio=5.0, latency=12.0))
    page = report.render()

    assert "**met**" in _target_row(page, "Serving throughput")
    assert "**met**" in _target_row(page, "Drift-to-retrain latency")
    assert "**met**" in _target_row(page, "DAG parse, each file, above")
    assert "**met**" in _target_row(page, "Drift check 1M x 20: speed, calibrated verdicts from the stored profile")
    assert "**met**" in _target_row(page, "False retrains on undrifted windows")
    assert "**met**" in _target_row(page, "Drift check 10M x 20 (1M reference), stored profile")
    assert "**met**" in _target_row(page, "seattle-weather summer")
    assert "What stands in the way" not in page
    assert "no GPU on this machine" in page and "Test CPU" in page
    # Evidently past its time limit: the speed-up is at least the limit over ours
    assert "| 10,000,000 x 20 (+ prediction) | 1,000,000 | 1 | 20.00 |" in page and "> 30x" in page
    assert "n/a (the season has 368 days)" in page

    saved(
        _results(
            serving_ratio=2.0,
            latency=45.0,
            parse_ms=80.0,
            false_alarms=30,
            scale_seconds=50.0,
            scale_drifted=("num_00", "num_08", "cat_3"),
        )
    )
    page = report.render()

    assert "**missed**" in _target_row(page, "False retrains on undrifted windows")
    assert "**missed**" in _target_row(page, "Any feature drifted on undrifted windows")
    assert "**missed**" in _target_row(page, "Drift check 10M x 20 (1M reference), calibration included")
    assert "**met**" in _target_row(page, "Drift check 10M x 20 (1M reference), stored profile")
    assert "**Calibrated false alarms.**" in page
    # a column the case does not move, drifted under the calibrated verdict, is named
    assert "does not move drift too: num_08, cat_3." in page

    assert "**missed**" in _target_row(page, "Serving throughput")
    assert "**missed**" in _target_row(page, "Drift-to-retrain latency")
    assert "**missed**" in _target_row(page, "DAG parse, each file, above")
    assert "**met**" in _target_row(page, "DAG parse, each file, in the dag-processor")
    assert "What stands in the way" in page and "**Serving throughput.**" in page
    assert "`ApprovalOperator`" in page, "the note names what makes ml_training slow to parse"


def test_a_section_that_did_not_run_reads_as_not_measured_never_as_met(saved):
    results = _results(serving_ratio=5.0, latency=12.0)
    del results["serving"], results["drift"], results["drift_verdicts"]
    saved(results)

    page = report.render()

    assert "not measured" in _target_row(page, "Serving")
    assert "**missed**" in _target_row(page, "Drift check")
    assert "not measured" in _target_row(page, "False retrains on undrifted windows")
    assert "did not complete" in page
