"""The nightly drift check as a command line: what the ``check_drift`` task runs in a pod.

    python -m include.monitoring.nightly --window-start 2026-03-01T00:00:00+00:00 \\
        --window-end 2026-03-02T00:00:00+00:00 --run-after 2026-03-02T00:05:00+00:00 \\
        --window-days 1 --min-rows 200 --drift-share-threshold 0.3 \\
        --performance-drop-threshold 0.05 [--estimated-drop-threshold 0.05] \\
        [--xcom-path /airflow/xcom/return.json]

The settings come from the environment (:meth:`include.settings.Settings.from_env`), the
dataset spec from the one they name. The window is the run's data interval
(``--window-start``/``--window-end``); a run without one (a manual run without a logical
date) leaves both empty and checks the last complete UTC day before ``--run-after``
(:func:`include.monitoring.window.checked_interval`). An empty
``--estimated-drop-threshold`` means none.

The result of :func:`include.monitoring.drift.check_drift` is printed as the last line of
stdout and, for a window that was compared, written to ``--xcom-path``. The exit status
says how the check ended:

- :data:`EXIT_OK` (0): the window was compared; the result holds the verdicts.
- :data:`EXIT_INSUFFICIENT_DATA` (3): too few served predictions to compare; nothing was
  written (the pod operator's ``skip_on_exit_code`` makes the task *skipped*).
- :data:`EXIT_BROKEN_WINDOW` (4): a column is missing, retyped or empty
  (:class:`~include.monitoring.window.DriftInputError`); retrying cannot help.
- 2: a usage error (argparse); 1: any other error (the traceback is in the log).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

from include.util.cli import checked_arg, optional_arg

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INSUFFICIENT_DATA = 3
EXIT_BROKEN_WINDOW = 4
MODULE = "include.monitoring.nightly"


def run_nightly_check(
    settings: Settings,
    spec: DatasetSpec,
    window_start: datetime | None,
    window_end: datetime | None,
    run_after: datetime,
    *,
    window_days: int,
    min_rows: int,
    drift_share_threshold: float,
    performance_drop_threshold: float,
    estimated_drop_threshold: float | None = None,
) -> tuple[datetime, datetime, dict[str, Any]]:
    """The check of one run: its window resolved from its data interval or ``run_after``, then compared.

    Returns ``(start, end, result)``: the window checked and what
    :func:`include.monitoring.drift.check_drift` returned. Raises what ``checked_interval`` and
    ``check_drift`` raise (:class:`~include.monitoring.window.DriftInputError` for a broken window).
    """
    from include.monitoring.drift import check_drift
    from include.monitoring.window import checked_interval

    start, end = checked_interval(window_start, window_end, run_after)
    result = check_drift(
        settings,
        spec,
        start,
        end,
        window_days=window_days,
        min_rows=min_rows,
        drift_share_threshold=drift_share_threshold,
        performance_drop_threshold=performance_drop_threshold,
        estimated_drop_threshold=estimated_drop_threshold,
    )
    return start, end, result


_instant = checked_arg(
    datetime.fromisoformat, "an ISO 8601 date and time", lambda v: v.tzinfo is not None, "has no UTC offset"
)
_optional_instant = optional_arg(_instant)
_number = checked_arg(float, "a number", math.isfinite, "is not a finite number")
_optional_number = optional_arg(_number)
_positive_int = checked_arg(int, "a whole number", lambda v: v >= 1, "is below 1")
# the check's options: the command line's argparse destinations and drift_monitor's params alike
CHECK_OPTIONS = (
    "window_days",
    "min_rows",
    "drift_share_threshold",
    "performance_drop_threshold",
    "estimated_drop_threshold",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m include.monitoring.nightly`` argument parser (an ``argparse.ArgumentParser``)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Check one window of served traffic for drift against the champion's training data.",
    )
    parser.add_argument(
        "--window-start", type=_optional_instant, default=None, help="the run's data interval start (ISO); may be empty"
    )
    parser.add_argument(
        "--window-end", type=_optional_instant, default=None, help="the run's data interval end (ISO); may be empty"
    )
    parser.add_argument(
        "--run-after",
        type=_instant,
        required=True,
        help="when the run was due (ISO): without a data interval, the last complete UTC day before it is checked",
    )
    parser.add_argument("--window-days", type=_positive_int, default=1, help="days of traffic compared")
    parser.add_argument("--min-rows", type=_positive_int, required=True, help="fewer served rows: insufficient data")
    parser.add_argument("--drift-share-threshold", type=_number, required=True)
    parser.add_argument("--performance-drop-threshold", type=_number, required=True)
    parser.add_argument(
        "--estimated-drop-threshold", type=_optional_number, default=None, help="empty: none (reported only)"
    )
    parser.add_argument(
        "--xcom-path",
        default=None,
        help="also write the result JSON here (KubernetesPodOperator: /airflow/xcom/return.json)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check for the arguments' window; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.window_start is None) != (args.window_end is None):
        parser.error("--window-start and --window-end are both set or both empty")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from include.data.spec import load_spec
    from include.monitoring.window import DriftInputError
    from include.settings import Settings
    from include.util.fs import write_atomically

    settings = Settings.from_env()
    spec = load_spec(settings.dataset_spec)
    try:
        start, end, result = run_nightly_check(
            settings,
            spec,
            args.window_start,
            args.window_end,
            args.run_after,
            **{name: getattr(args, name) for name in CHECK_OPTIONS},
        )
    except DriftInputError as bad_window:
        log.error("broken window: %s", bad_window)
        print(f"broken window: {bad_window}", file=sys.stderr, flush=True)
        return EXIT_BROKEN_WINDOW
    print(json.dumps(result), flush=True)
    if result["status"] != "ok":
        log.warning(
            "window %s..%s skipped: insufficient data: %s", start.isoformat(), end.isoformat(), result["reason"]
        )
        return EXIT_INSUFFICIENT_DATA
    if args.xcom_path:
        # atomically: the pod's XCom sidecar never reads a half-written file
        write_atomically(args.xcom_path, json.dumps(result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
