"""The dataset spec's ``rollout:`` section: how a gated model version reaches traffic.

All keys are optional; the defaults are the ones below::

    rollout:
      mode: direct              # direct | shadow | canary
      canary_steps: [0.05, 0.25, 1.0]
      min_labelled_rows: 200    # per version (canary: per step too) before anything is decided
      max_duration_hours: 72    # then an undecided rollout is rolled back
      margin: 0.01              # non-inferiority margin, in the gate metric's units
      confidence: 0.95          # of the bootstrap confidence intervals
      guardrails: {max_error_rate: 0.02, max_p99_latency_ms: 250, max_prediction_gap: 0.15}

``direct`` is the deploy without a rollout (serve, smoke test, move ``champion``); ``shadow``
and ``canary`` hand the version to :mod:`include.rollout`, which decides from live labelled
rows. The rules are in :mod:`include.rollout.decision`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MODES = ("direct", "shadow", "canary")
ROLLOUT_MODES = ("shadow", "canary")
DEFAULT_CANARY_STEPS = (0.05, 0.25, 1.0)


@dataclass(frozen=True)
class Guardrails:
    """Limits that roll a candidate back before any label arrives: its error rate (a share of its
    requests), its p99 latency in milliseconds, and the gap between its predictions and the
    champion's (see :func:`include.rollout.decision.prediction_gap` for the measure)."""

    max_error_rate: float = 0.02
    max_p99_latency_ms: float = 250.0
    max_prediction_gap: float = 0.15


@dataclass(frozen=True)
class RolloutSpec:
    """The checked ``rollout:`` section (see the module's docstring); the defaults when it is absent."""

    mode: str = "direct"
    canary_steps: tuple[float, ...] = DEFAULT_CANARY_STEPS
    min_labelled_rows: int = 200
    max_duration_hours: float = 72.0
    margin: float = 0.01
    confidence: float = 0.95
    guardrails: Guardrails = field(default_factory=Guardrails)


def _fail(where: str, message: str):
    from include.data.spec import SpecError

    # message starts with ".key ..." or " ...": the error reads "rollout.key ..." or "rollout ..."
    return SpecError(f"dataset spec {where}: rollout{message}")


def _positive(where: str, key: str, value: Any, *, upper: float = math.inf, closed_upper: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f".{key} must be a number, got {value!r}")
    inside = 0 < value <= upper if closed_upper else 0 < value < upper
    if not inside:
        bound = f"{'<=' if closed_upper else '<'} {upper:g}" if math.isfinite(upper) else ""
        raise _fail(where, f".{key} must be above 0{' and ' + bound if bound else ''}, got {value!r}")
    return float(value)


def _steps(where: str, raw: Any) -> tuple[float, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(where, f".canary_steps must be a non-empty list of shares in (0, 1], got {raw!r}")
    steps = tuple(_positive(where, "canary_steps[]", value, upper=1.0) for value in raw)
    if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
        raise _fail(where, f".canary_steps must rise strictly, got {list(steps)}")
    return steps


def parse_rollout(where: str, raw: Any) -> RolloutSpec:
    """The :class:`RolloutSpec` of a spec's ``rollout:`` value (None: the defaults).

    ``where`` names the spec in errors. Raises :class:`include.data.spec.SpecError` naming the
    key for an unknown key, a mode other than direct/shadow/canary, canary steps that are not
    rising shares in (0, 1], a non-positive count or duration, a margin outside [0, 1), a
    confidence outside (0.5, 1) or a guardrail that is not a positive number.
    """
    if raw is None:
        return RolloutSpec()
    defaults = RolloutSpec()
    expected = {
        "mode",
        "canary_steps",
        "min_labelled_rows",
        "max_duration_hours",
        "margin",
        "confidence",
        "guardrails",
    }
    if not isinstance(raw, dict):
        raise _fail(where, f" must be a mapping with keys among {sorted(expected)}, got {raw!r}")
    unknown = sorted(set(raw) - expected)
    if unknown:
        raise _fail(where, f" has unknown key(s) {unknown}; expected among {sorted(expected)}")
    mode = raw.get("mode", defaults.mode)
    if mode not in MODES:
        raise _fail(where, f".mode must be one of {', '.join(MODES)}, got {mode!r}")
    rows = raw.get("min_labelled_rows", defaults.min_labelled_rows)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise _fail(where, f".min_labelled_rows must be a whole number >= 1, got {rows!r}")
    margin = raw.get("margin", defaults.margin)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise _fail(where, f".margin must be a number in [0, 1), got {margin!r}")
    confidence = raw.get("confidence", defaults.confidence)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 < confidence < 1:
        raise _fail(where, f".confidence must be a number in (0.5, 1), got {confidence!r}")
    return RolloutSpec(
        mode=mode,
        canary_steps=_steps(where, raw["canary_steps"]) if "canary_steps" in raw else defaults.canary_steps,
        min_labelled_rows=rows,
        max_duration_hours=_positive(where, "max_duration_hours", raw.get("max_duration_hours", 72.0)),
        margin=float(margin),
        confidence=float(confidence),
        guardrails=_guardrails(where, raw.get("guardrails")),
    )


def _guardrails(where: str, raw: Any) -> Guardrails:
    if raw is None:
        return Guardrails()
    expected = {"max_error_rate", "max_p99_latency_ms", "max_prediction_gap"}
    if not isinstance(raw, dict) or set(raw) - expected:
        raise _fail(where, f".guardrails must be a mapping with keys among {sorted(expected)}, got {raw!r}")
    defaults = Guardrails()
    return Guardrails(
        max_error_rate=_positive(where, "guardrails.max_error_rate", raw.get("max_error_rate", 0.02), upper=1.0),
        max_p99_latency_ms=_positive(where, "guardrails.max_p99_latency_ms", raw.get("max_p99_latency_ms", 250)),
        max_prediction_gap=_positive(
            where, "guardrails.max_prediction_gap", raw.get("max_prediction_gap", defaults.max_prediction_gap)
        ),
    )
