"""How the DAGs' tasks retry: a few tries with exponential backoff.

What a retry helps with is short-lived: the MLflow tracking server restarting, the
DVC remote or the cluster API briefly unreachable. What it cannot help with (bad
data, a rejected challenger, a broken analysis window) fails at once with
``AirflowFailException`` in the task itself, never through these retries.

The base delay is read from ``MLOPS_RETRY_DELAY_SECONDS`` when the DAG file is parsed
(an environment variable, like ``MLOPS_PROFILE``, never a Variable): a local test run
sets it to a second so that a retried task does not sit idle for minutes.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta

RETRY_DELAY_ENV = "MLOPS_RETRY_DELAY_SECONDS"
# the delay doubles with each try: 20 s, 40 s, 80 s ... for the default base of 20 s
BACKOFF_MULTIPLIER = 2.0
MAX_RETRY_DELAY = timedelta(minutes=10)


def retry_delay(default_seconds: float) -> timedelta:
    text = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not text:
        return timedelta(seconds=default_seconds)
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{RETRY_DELAY_ENV}={text!r} must be a number of seconds > 0")
    return timedelta(seconds=seconds)


def retry_args(retries: int, default_delay_seconds: float) -> dict:
    """``default_args`` entries: ``retries`` retries, exponential backoff from the base delay."""
    return {
        "retries": retries,
        "retry_delay": retry_delay(default_delay_seconds),
        "retry_exponential_backoff": BACKOFF_MULTIPLIER,
        "max_retry_delay": MAX_RETRY_DELAY,
    }
