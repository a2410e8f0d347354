"""The command-line helpers: dates as argparse reads them, and the drift options two commands share."""

from __future__ import annotations

import argparse
from datetime import date

import pytest

from include.simulation.generate import DriftConfig, add_drift_arguments, drift_from_args
from include.util.cli import parse_date_arg


def test_dates_are_iso_days_and_anything_else_is_a_usage_error():
    assert parse_date_arg("2026-10-01") == date(2026, 10, 1)
    for text in ("2026-13-01", "01.10.2026", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="YYYY-MM-DD"):
            parse_date_arg(text)


def _drift(argv: list[str]):
    parser = argparse.ArgumentParser(prog="command")
    add_drift_arguments(parser)
    return drift_from_args(parser, parser.parse_args(argv))


def test_drift_options_give_a_checked_drift_config_or_none():
    assert _drift([]) is None
    assert _drift(["--drift", "concept", "--drift-from", "2026-10-02", "--drift-strength", "0.5"]) == DriftConfig(
        "concept", date(2026, 10, 2), 0.5
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--drift", "concept"], "--drift needs --drift-from"),
        (["--drift-from", "2026-10-02"], "--drift-from needs --drift"),
        (["--drift", "both", "--drift-from", "2026-10-02", "--drift-strength", "-1"], "drift strength must be"),
    ],
)
def test_incomplete_or_invalid_drift_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        _drift(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
