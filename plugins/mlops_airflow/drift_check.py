"""The ``check_drift`` task in both profiles: one check, two places to run it.

kubernetes: a KubernetesPodOperator runs ``python -m include.monitoring.nightly`` in the
monitoring image (:mod:`mlops_airflow.drift_check_pod`), so a window of tens of millions
of rows never loads an Airflow worker.
local: the same check runs inside the worker (:class:`LocalDriftCheckOperator`).
Either way the task id is ``check_drift``, the window is the run's data interval (or, for a
manual run without a logical date, the last complete UTC day before it), its XCom is the
dict :func:`include.monitoring.drift.check_drift` returns, an insufficient window ends the
task as *skipped* and a broken window fails it without a retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from mlops_airflow.profiles import KUBERNETES, current_profile

__all__ = ["DRIFT_TASK_ID", "LocalDriftCheckOperator", "drift_check_task"]

DRIFT_TASK_ID = "check_drift"


class LocalDriftCheckOperator(BaseOperator):
    """Runs the drift check of the run's window inside the worker and returns its result as XCom."""

    template_fields: Sequence[str] = ()
    ui_color = "#e0ecf8"

    def execute(self, context) -> dict[str, Any]:
        """The check of this run's window.

        Returns the result dict of ``check_drift``. Raises ``AirflowSkipException`` when the
        window holds too few served predictions, and ``AirflowFailException`` (no retry) when
        it cannot be compared (``DriftInputError``).
        """
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from include.monitoring.nightly import CHECK_OPTIONS, run_nightly_check
        from include.monitoring.window import DriftInputError, checked_interval
        from mlops_airflow.runtime import task_settings_and_spec

        settings, spec = task_settings_and_spec()
        params = context["params"]
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        run_after = context["dag_run"].run_after
        try:
            start, end, result = run_nightly_check(
                settings, spec, start, end, run_after, **{name: params[name] for name in CHECK_OPTIONS}
            )
        except DriftInputError as bad_window:
            # a broken window stays broken on retry, and must never read as "no drift"
            start, end = checked_interval(start, end, run_after)
            raise AirflowFailException(f"window {start}..{end}: {bad_window}") from None
        if result["status"] != "ok":
            raise AirflowSkipException(f"skipped: insufficient data: {result['reason']}")
        return result


def drift_check_arguments() -> list[str]:
    """The command line's arguments for a run, as templates: the window from the run's data
    interval (empty without one) and ``run_after``, the thresholds from its params."""
    return [
        "--window-start",
        "{{ data_interval_start.isoformat() if data_interval_start else '' }}",
        "--window-end",
        "{{ data_interval_end.isoformat() if data_interval_end else '' }}",
        "--run-after",
        "{{ dag_run.run_after.isoformat() }}",
        "--window-days",
        "{{ params.window_days }}",
        "--min-rows",
        "{{ params.min_rows }}",
        "--drift-share-threshold",
        "{{ params.drift_share_threshold }}",
        "--performance-drop-threshold",
        "{{ params.performance_drop_threshold }}",
        "--estimated-drop-threshold",
        "{{ '' if params.estimated_drop_threshold is none else params.estimated_drop_threshold }}",
    ]


def drift_check_task(*, execution_timeout: timedelta, **kwargs) -> BaseOperator:
    """The ``check_drift`` task for the current profile (``MLOPS_PROFILE``).

    ``kwargs`` go to the operator. Returns a :class:`LocalDriftCheckOperator` (local
    profile) or a ``DriftCheckPodOperator`` (kubernetes profile). Raises ``ValueError`` when
    ``MLOPS_PROFILE`` names no profile, or (kubernetes) when ``execution_timeout`` is under 10 s.
    """
    common = dict(task_id=DRIFT_TASK_ID, execution_timeout=execution_timeout, **kwargs)
    if current_profile() != KUBERNETES:
        return LocalDriftCheckOperator(**common)
    # Imported here, not at the top: the Kubernetes provider is a heavy import that a DAG
    # parsed in the local profile must never pay for.
    from mlops_airflow.drift_check_pod import drift_check_pod

    return drift_check_pod(arguments=drift_check_arguments(), **common)
