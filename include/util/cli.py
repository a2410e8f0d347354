"""Command-line helpers the ``python -m`` entry points share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from typing import Any


def parse_date_arg(value: str) -> date:
    """argparse ``type=`` for a ``YYYY-MM-DD`` date.

    Returns the ``datetime.date``. Raises ``argparse.ArgumentTypeError`` (which argparse
    reports as a usage error naming the option) when ``value`` is not such a date.
    """
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form") from None


def checked_arg(
    convert: Callable[[str], Any], what: str, check: Callable[[Any], bool] | None = None, problem: str = ""
) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert(text)``, refused as "not ``what``" when it raises ``ValueError``, and
    as ``problem`` when ``check`` says no. An empty text stays None when ``what`` allows it (see
    :func:`optional_arg`). Returns the converter; it raises ``argparse.ArgumentTypeError``, which
    argparse reports as a usage error naming the option."""

    def parse(text: str) -> Any:
        try:
            value = convert(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if check is not None and not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    return parse


def optional_arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for a value that may be left empty: an empty (or blank) text is None."""
    return lambda text: parse(text) if text.strip() else None
