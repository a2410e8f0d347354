"""Drift the simulators inject into the data: which kind, from which day, how strong, and the options that ask for it.

:mod:`include.simulation.generate` describes what each kind does to a generated day;
:mod:`include.simulation.traffic` sends drifted traffic to a model server. Both
command lines take the drift as ``--drift KIND --drift-from YYYY-MM-DD
[--drift-strength S]`` (:func:`add_drift_arguments`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from datetime import date

from include.util.cli import parse_date_arg

DRIFT_KINDS = ("covariate", "concept", "both")


@dataclass(frozen=True)
class DriftConfig:
    """A change in the data from ``start`` on: ``kind`` is "covariate", "concept" or "both".

    Checked on construction: raises ``ValueError`` for an unknown kind, a ``start`` that is
    not a ``datetime.date``, or a ``strength`` that is not a finite number >= 0.
    """

    kind: str
    start: date
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"drift kind {self.kind!r} is not one of {', '.join(DRIFT_KINDS)}")
        if not isinstance(self.start, date):
            raise ValueError(f"drift start must be a datetime.date, got {self.start!r}")
        if (
            isinstance(self.strength, bool)
            or not isinstance(self.strength, (int, float))
            or not math.isfinite(self.strength)
            or self.strength < 0
        ):
            raise ValueError(f"drift strength must be a finite number >= 0, got {self.strength!r}")

    def covariate_strength(self, day: date) -> float:
        """The covariate drift applied to ``day``: ``strength`` from ``start`` on, else 0.0."""
        return float(self.strength) if day >= self.start and self.kind in ("covariate", "both") else 0.0

    def concept_strength(self, day: date) -> float:
        """The concept drift applied to ``day``: ``strength`` from ``start`` on, else 0.0."""
        return float(self.strength) if day >= self.start and self.kind in ("concept", "both") else 0.0


def add_drift_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--drift``, ``--drift-from`` and ``--drift-strength`` to ``parser``; read them back
    with :func:`drift_from_args`. Returns nothing."""
    parser.add_argument("--drift", choices=DRIFT_KINDS, help="inject drift of this kind")
    parser.add_argument("--drift-from", type=parse_date_arg, help="first drifted day, YYYY-MM-DD")
    parser.add_argument("--drift-strength", type=float, default=1.0, help="drift strength (default 1.0)")


def drift_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DriftConfig | None:
    """The drift the options of :func:`add_drift_arguments` ask for.

    Returns the ``DriftConfig``, or None when ``--drift`` is not given. Exits through
    ``parser.error`` (``SystemExit`` with status 2) when only one of ``--drift`` and
    ``--drift-from`` is given or the strength is invalid.
    """
    if args.drift and args.drift_from is None:
        parser.error("--drift needs --drift-from (the first drifted day)")
    if args.drift_from is not None and not args.drift:
        parser.error("--drift-from needs --drift (covariate, concept or both)")
    if not args.drift:
        return None
    try:
        return DriftConfig(args.drift, args.drift_from, args.drift_strength)
    except ValueError as exc:
        parser.error(str(exc))
