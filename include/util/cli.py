"""Command-line helpers the ``python -m`` entry points share."""

from __future__ import annotations

import argparse
from datetime import date


def parse_date_arg(value: str) -> date:
    """argparse ``type=`` for a ``YYYY-MM-DD`` date.

    Returns the ``datetime.date``. Raises ``argparse.ArgumentTypeError`` (which argparse
    reports as a usage error naming the option) when ``value`` is not such a date.
    """
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form") from None
