"""``python -m include.monitoring.nightly``: the drift check's pod command, run as a real subprocess.

A champion is registered with its lineage and a served day lands in the inference log
(as in :mod:`tests.unit.monitoring.test_drift`); the command line, with the settings in its
environment, must write what :func:`include.monitoring.drift.check_drift` returns for the same
window, and say an empty or broken window by its exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import mlflow
import pytest

from include.monitoring.nightly import EXIT_BROKEN_WINDOW, EXIT_INSUFFICIENT_DATA, EXIT_OK, build_parser
from include.settings import PROJECT_ROOT
from tests.unit.monitoring.test_drift import THRESHOLDS, WINDOW_START, _log_served_day, _register_champion

START = datetime(2024, 3, 1, tzinfo=UTC)


def _nightly(tmp_path, *arguments: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Runs the command line with the test's settings in its environment; returns it and its XCom file."""
    xcom = tmp_path / "xcom" / "return.json"
    xcom.parent.mkdir(exist_ok=True)
    xcom.unlink(missing_ok=True)
    completed = subprocess.run(
        [sys.executable, "-m", "include.monitoring.nightly", *arguments, "--xcom-path", str(xcom)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return completed, json.loads(xcom.read_text()) if xcom.exists() else None


def _thresholds(min_rows: int = 100) -> list[str]:
    return [
        "--min-rows",
        str(min_rows),
        "--drift-share-threshold",
        str(THRESHOLDS["drift_share_threshold"]),
        "--performance-drop-threshold",
        str(THRESHOLDS["performance_drop_threshold"]),
        "--estimated-drop-threshold",
        "",
    ]


def test_the_command_line_writes_what_check_drift_returns_and_exits_by_outcome(mlops_env, spec, tmp_path):
    from include import registry
    from include.monitoring.drift import check_drift

    version, *_ = _register_champion(mlops_env, spec)
    model = mlflow.pyfunc.load_model(registry.model_uri(mlops_env.model_name, version))
    _log_served_day(mlops_env, spec, model, version, WINDOW_START, 600)
    _log_served_day(mlops_env, spec, model, version, WINDOW_START + timedelta(days=1), 300, plan_as_numbers=True)
    expected = check_drift(mlops_env, spec, START, START + timedelta(days=1), min_rows=100, **THRESHOLDS)
    assert expected["status"] == "ok"

    # a scheduled run: its data interval; re-running the window replaces its results
    completed, result = _nightly(
        tmp_path,
        "--window-start",
        START.isoformat(),
        "--window-end",
        (START + timedelta(days=1)).isoformat(),
        "--run-after",
        (START + timedelta(days=1)).isoformat(),
        *_thresholds(),
    )
    assert completed.returncode == EXIT_OK, completed.stderr[-3000:]
    assert result == expected
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == expected

    # an empty window: insufficient data, skipped, and nothing for XCom
    empty_day = START + timedelta(days=4)
    completed, result = _nightly(
        tmp_path,
        "--window-start",
        empty_day.isoformat(),
        "--window-end",
        (empty_day + timedelta(days=1)).isoformat(),
        "--run-after",
        (empty_day + timedelta(days=1)).isoformat(),
        *_thresholds(),
    )
    assert completed.returncode == EXIT_INSUFFICIENT_DATA, completed.stderr[-3000:]
    assert result is None
    assert json.loads(completed.stdout.strip().splitlines()[-1])["status"] == "insufficient_data"

    # a manual run without a logical date, the morning after the broken day: that day, which fails
    completed, result = _nightly(
        tmp_path,
        "--window-start",
        "",
        "--window-end",
        "",
        "--run-after",
        (START + timedelta(days=2, hours=8)).isoformat(),
        *_thresholds(),
    )
    assert completed.returncode == EXIT_BROKEN_WINDOW, completed.stderr[-3000:]
    assert result is None
    assert "categorical feature 'plan' should hold strings" in completed.stderr


def test_the_exit_codes_are_distinct_from_python_s_and_argparse_s():
    assert len({EXIT_OK, EXIT_INSUFFICIENT_DATA, EXIT_BROKEN_WINDOW, 1, 2}) == 5


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--window-start", "2024-03-01T00:00:00+00:00", "--window-end", ""], "both set or both empty"),
        (["--window-start", "2024-03-01", "--window-end", "2024-03-02"], "has no UTC offset"),
        (["--min-rows", "0"], "below 1"),
        (["--drift-share-threshold", "nan"], "not a finite number"),
    ],
)
def test_bad_arguments_are_usage_errors(arguments, message, capsys):
    from include.monitoring.nightly import main

    base = {
        "--run-after": "2024-03-02T00:00:00+00:00",
        "--min-rows": "100",
        "--drift-share-threshold": "0.3",
        "--performance-drop-threshold": "0.05",
    }
    given = dict(zip(arguments[::2], arguments[1::2], strict=True))
    argv = [item for name, value in {**base, **given}.items() for item in (name, value)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_empty_estimated_threshold_means_none():
    args = build_parser().parse_args(
        [
            "--run-after",
            "2024-03-02T00:00:00+00:00",
            "--min-rows",
            "1",
            "--drift-share-threshold",
            "0.3",
            "--performance-drop-threshold",
            "0.05",
            "--estimated-drop-threshold",
            "",
        ]
    )
    assert args.estimated_drop_threshold is None and args.window_start is None and args.window_end is None
