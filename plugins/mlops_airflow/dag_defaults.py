"""What the project's DAGs share in their ``@dag`` call: owner, start, no catch-up, retries and timeouts.

Read while DAG files are parsed: nothing here imports more than ``pendulum`` and
:mod:`mlops_airflow.retries`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

from mlops_airflow.retries import retry_args

OWNER = "ml-platform"
# the first logical date of the manually triggered DAGs (catch-up is off, so nothing runs for it)
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def dag_defaults(
    *,
    retries: int,
    retry_delay_seconds: float,
    execution_timeout: timedelta,
    start_date: pendulum.DateTime = START_DATE,
    max_active_runs: int = 1,
) -> dict[str, Any]:
    """The ``@dag`` keyword arguments every DAG here sets, for ``@dag(..., **dag_defaults(...))``.

    Returns ``start_date``, ``catchup`` (off), ``max_active_runs`` and ``default_args``: the
    owner, ``retries`` retries with exponential backoff from ``retry_delay_seconds``
    (:func:`mlops_airflow.retries.retry_args`, which may raise ``ValueError`` for a bad
    ``MLOPS_RETRY_DELAY_SECONDS``) and each task's ``execution_timeout``.
    """
    default_args = {
        "owner": OWNER,
        **retry_args(retries=retries, default_delay_seconds=retry_delay_seconds),
        "execution_timeout": execution_timeout,
    }
    return {
        "start_date": start_date,
        "catchup": False,
        "max_active_runs": max_active_runs,
        "default_args": default_args,
    }
