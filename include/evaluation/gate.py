"""The promotion gate: may the challenger replace the champion?

The gating metric is the evaluation's ``metric`` (the spec's ``gate.metric``,
e.g. ROC AUC, macro-F1 or RMSE), read in its own direction: larger is better for
``roc_auc``, ``pr_auc``, ``macro_f1`` and ``r2``, smaller for ``rmse``, ``mae``
and ``log_loss``. The task's other metrics are reported, never gated. Rules:

1. ``min_<metric>`` (``max_<metric>`` for an error metric): the challenger's overall
   held-out score reaches the bar (``gate.min``). With no bar set, it must beat the
   no-skill baseline on the same rows (ROC AUC 0.5, predicting the mean, ...).
2. ``latency``: the challenger's p95 single-request latency is within its budget.
3. With a champion, ``regression_overall``: the challenger loses at most
   ``max_regression`` (in the metric's units) against the champion.
4. With a champion, ``slice <feature>=<value>``: the same on every slice the champion
   was scored on. A slice missing for the challenger fails; a slice where either
   side has no score (e.g. all labels one class) is reported as not comparable and
   does not fail.

With no champion (the first model) only the absolute rules 1-2 apply, and the
decision says so. The gate fails CLOSED: a missing, None, non-numeric or NaN
value where a number is required fails its check with detail "missing"/"NaN";
it never passes by default. To judge each value itself, it reads the evaluation
with :meth:`Evaluation.from_partial <include.evaluation.records.Evaluation.from_partial>`,
which keeps what is there (a NaN, a string) instead of refusing the whole result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.evaluation.metrics import higher_is_better, loss_against
from include.evaluation.records import UNSET, Evaluation, ModelScores

# evaluations logged before metrics were task-aware gate on ROC AUC
LEGACY_METRIC = "roc_auc"

MAX_TAG_VALUE_CHARS = 4000


@dataclass
class Check:
    """One gate check: its ``name``, the measured ``value`` against ``threshold`` (None when not
    measured or without a bar), whether it ``passed``, and a sentence of ``detail``."""

    name: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str


@dataclass
class GateDecision:
    """The gate's verdict: ``passed``, the ``reason`` in one sentence, every :class:`Check`, whether the
    challenger is the ``first_model`` (no champion), and the numbers the checks used (scores in the
    ``metric``'s units, latency in milliseconds of CPU time)."""

    passed: bool
    reason: str
    checks: list[Check]
    first_model: bool
    metric: str = LEGACY_METRIC
    # the bar set for the metric (None: beat the no-skill baseline, which ``baseline`` holds)
    minimum: float | None = None
    baseline: float | None = None
    max_regression: float | None = None
    challenger_score: float | None = None
    champion_score: float | None = None
    latency_p95_ms: float | None = None
    latency_budget_ms: float | None = None
    latency_method: str | None = None

    @property
    def failed_checks(self) -> list[Check]:
        """The checks that failed, a list of :class:`Check` in check order (empty when it passed)."""
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        """The decision as a JSON-ready dict, one key per field; ``checks`` a list of dicts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        """The decision :meth:`to_dict` wrote; ``TypeError`` for a key that is not a field."""
        values = dict(data)
        values["checks"] = [Check(**check) for check in values.get("checks", [])]
        return cls(**values)

    def as_tags(self) -> dict[str, str]:
        """Flat string tags for the MLflow run and model version, e.g. ``gate.passed=false``: a dict of str to str."""
        tags = {
            "gate.passed": str(self.passed).lower(),
            "gate.first_model": str(self.first_model).lower(),
            "gate.reason": _truncate(self.reason),
            "gate.metric": self.metric,
            "gate.min": _tag_number(self.minimum),
            "gate.baseline": _tag_number(self.baseline),
            "gate.max_regression": _tag_number(self.max_regression),
            "gate.challenger_score": _tag_number(self.challenger_score),
            "gate.champion_score": _tag_number(self.champion_score),
            "gate.latency_p95_ms": _tag_number(self.latency_p95_ms),
            "gate.latency_budget_ms": _tag_number(self.latency_budget_ms),
            "gate.latency_method": _truncate(self.latency_method or "none"),
            "gate.failed_checks": _truncate(", ".join(check.name for check in self.failed_checks) or "none"),
        }
        for check in self.checks:
            tags[_tag_key("gate.check", check.name)] = "pass" if check.passed else "fail"
        return tags

    def table(self) -> str:
        """Returns the checks as an aligned text table (a str), for the task log."""
        header = ("check", "value", "threshold", "result", "detail")
        rows = [
            (check.name, _cell(check.value), _cell(check.threshold), "pass" if check.passed else "FAIL", check.detail)
            for check in self.checks
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, tuple("-" * width for width in widths), *rows]
        ]
        lines.append(f"decision: {self.reason}")
        return "\n".join(lines)


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_TAG_VALUE_CHARS else text[: MAX_TAG_VALUE_CHARS - 3] + "..."


def _tag_number(value: float | None) -> str:
    return "none" if value is None else repr(float(value))


def _tag_key(*parts: str) -> str:
    # MLflow tag keys allow letters, digits, '_', '-', '.', ' ', '/'; '=' in "plan=basic" is not one
    return re.sub(r"[^A-Za-z0-9_\-. /]", ".", ".".join(parts)).replace(" ", "_")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _number(value: Any) -> tuple[float | None, str | None]:
    """(number, None) for a usable number, else (None, "missing"/"NaN"/"not a number")."""
    if value is None:
        return None, "missing"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None, f"not a number ({value!r})"
    value = float(value)
    if math.isnan(value):
        return None, "NaN"
    if math.isinf(value):
        return None, "not finite"
    return value, None


def _pair(value: float, threshold: float) -> tuple[str, str]:
    """Format two numbers with enough decimals that unequal numbers never print as equal."""
    decimals = 3
    while decimals < 7 and value != threshold and f"{value:.{decimals}f}" == f"{threshold:.{decimals}f}":
        decimals += 1
    return f"{value:.{decimals}f}", f"{threshold:.{decimals}f}"


def _p95(scores: ModelScores) -> Any:
    return None if scores.latency_ms is None else scores.latency_ms.p95


def _floor_check(challenger: ModelScores, metric: str, minimum: float | None, baseline: float | None) -> Check:
    higher = higher_is_better(metric)
    name = f"{'min' if higher else 'max'}_{metric}"
    value, problem = _number(challenger.overall.get(metric))
    if minimum is None:
        bar, bar_problem = _number(baseline)
        if bar_problem:
            return Check(name, value, None, False, f"no {name} set and the no-skill baseline is {bar_problem}")
        label, strict = "the no-skill baseline", True
    else:
        bar, label, strict = minimum, name, False
    if problem:
        return Check(name, None, bar, False, f"challenger {metric} {problem}")
    shown, limit = _pair(value, bar)
    if higher:
        passed, sign = (value > bar, ">") if strict else (value >= bar, ">=")
    else:
        passed, sign = (value < bar, "<") if strict else (value <= bar, "<=")
    if passed:
        return Check(name, value, bar, True, f"{metric} {shown} {sign} {label} {limit}")
    opposite = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[sign]
    return Check(name, value, bar, False, f"{metric} {shown} {opposite} {label} {limit}")


def _latency_check(challenger: ModelScores) -> Check:
    p95, p95_problem = _number(_p95(challenger))
    budget, budget_problem = _number(challenger.latency_budget_ms)
    within = challenger.within_latency_budget
    if p95_problem:
        return Check("latency", None, budget, False, f"latency p95 {p95_problem}")
    if budget_problem:
        return Check("latency", p95, None, False, f"latency budget {budget_problem}")
    if not isinstance(within, bool):
        return Check("latency", p95, budget, False, "within_latency_budget missing")
    shown, limit = _pair(p95, budget)
    if within and p95 <= budget:
        return Check("latency", p95, budget, True, f"latency p95 {shown} ms <= budget {limit} ms")
    return Check("latency", p95, budget, False, f"latency p95 {shown} ms > budget {limit} ms")


def _regression_check(
    name: str,
    label: str,
    metric: str,
    challenger_value: Any,
    champion_value: Any,
    max_regression: float,
    *,
    comparable_if_none: bool,
) -> Check:
    challenger_score, challenger_problem = _number(challenger_value)
    champion_score, champion_problem = _number(champion_value)
    if comparable_if_none and (challenger_value is None or champion_value is None):
        side = "challenger" if challenger_value is None else "champion"
        return Check(
            name,
            None,
            max_regression,
            True,
            f"{label}: not comparable, {side} {metric} is None (e.g. one class only); reported, not gated",
        )
    if challenger_problem:
        return Check(name, None, max_regression, False, f"{label}: challenger {metric} {challenger_problem}")
    if champion_problem:
        return Check(name, None, max_regression, False, f"{label}: champion {metric} {champion_problem}")
    regression = loss_against(metric, challenger_score, champion_score)
    # rounding noise in two scores must not turn "equal to the tolerance" into a rejection
    if regression <= max_regression + 1e-12:
        change = f"{challenger_score - champion_score + 0.0:+.3f}"  # + 0.0 turns -0.0 into 0.0
        return Check(
            name,
            regression,
            max_regression,
            True,
            f"{label}: {metric} {challenger_score:.3f} vs champion {champion_score:.3f} ({change}), "
            f"within max_regression {max_regression:.3f}",
        )
    shown, limit = _pair(regression, max_regression)
    return Check(
        name,
        regression,
        max_regression,
        False,
        f"{label} regressed {shown} > max_regression {limit} "
        f"({metric} {challenger_score:.3f} vs champion {champion_score:.3f})",
    )


def _log_loss_check(challenger: ModelScores, champion: ModelScores) -> Check:
    challenger_loss, challenger_problem = _number(challenger.overall.get("log_loss"))
    champion_loss, champion_problem = _number(champion.overall.get("log_loss"))
    if challenger_problem or champion_problem:
        problem = f"challenger {challenger_problem}" if challenger_problem else f"champion {champion_problem}"
        return Check("log_loss", None, None, True, f"log_loss {problem}; reported, not gated")
    change = challenger_loss - champion_loss
    return Check(
        "log_loss",
        change,
        None,
        True,
        f"log_loss {challenger_loss:.3f} vs champion {champion_loss:.3f} ({change:+.3f}); reported, not gated",
    )


def decide(
    evaluation: Mapping[str, Any] | Evaluation, minimum: float | None, max_regression: float, metric: str | None = None
) -> GateDecision:
    """Apply the rules in the module docstring to an :func:`include.evaluation.evaluate.evaluate` result.

    ``evaluation`` is that result (a mapping, read with
    :meth:`~include.evaluation.records.Evaluation.from_partial`) or its record.
    ``metric`` defaults to the evaluation's own; ``minimum`` is the bar in its
    direction (None: beat the evaluation's ``baseline``). Returns a :class:`GateDecision`. Raises
    ``ValueError`` for an evaluation that is not a mapping, an unknown metric, a non-finite bar or a
    negative ``max_regression``; a bad *evaluation* never raises, it fails the check it breaks.
    """
    if isinstance(evaluation, Mapping):
        evaluation = Evaluation.from_partial(evaluation)
    elif not isinstance(evaluation, Evaluation):
        raise ValueError(f"evaluation must be a mapping, got {type(evaluation).__name__}")
    metric = metric or evaluation.metric or LEGACY_METRIC
    try:
        higher_is_better(metric)
    except KeyError:
        raise ValueError(f"unknown gate metric {metric!r}") from None
    bar = None
    if minimum is not None:
        bar, bar_problem = _number(minimum)
        bounded = metric in ("roc_auc", "pr_auc", "macro_f1")
        if bar_problem or (bounded and not 0 <= bar <= 1):
            name = f"{'min' if higher_is_better(metric) else 'max'}_{metric}"
            raise ValueError(f"{name} must be a number{' in [0, 1]' if bounded else ''}, got {minimum!r}")
    tolerance, tolerance_problem = _number(max_regression)
    if tolerance_problem or tolerance < 0:
        raise ValueError(f"max_regression must be a number >= 0, got {max_regression!r}")

    challenger, champion = evaluation.challenger, evaluation.champion
    baseline = _number(evaluation.baseline)[0]
    checks = [_floor_check(challenger, metric, bar, baseline), _latency_check(challenger)]
    first_model = False
    if champion is UNSET:
        # an evaluation that forgot the champion must not be mistaken for the first model
        checks.append(
            Check("champion", None, None, False, "champion missing from the evaluation (expected its scores or null)")
        )
    elif champion is None:
        first_model = True
    else:
        feature = evaluation.slice_feature or "slice"
        checks.append(
            _regression_check(
                "regression_overall",
                "overall",
                metric,
                challenger.overall.get(metric),
                champion.overall.get(metric),
                tolerance,
                comparable_if_none=False,
            )
        )
        challenger_slices = challenger.slices or {}
        champion_slices = champion.slices
        if champion_slices is None:
            checks.append(Check("slices", None, tolerance, False, "champion slices missing"))
            champion_slices = {}
        for value, champion_scores in champion_slices.items():
            label = f"slice {feature}={value}"
            if value not in challenger_slices:
                checks.append(Check(label, None, tolerance, False, f"{label} missing for the challenger"))
                continue
            checks.append(
                _regression_check(
                    label,
                    label,
                    metric,
                    challenger_slices[value].get(metric),
                    champion_scores.get(metric),
                    tolerance,
                    comparable_if_none=True,
                )
            )
        for value in challenger_slices:
            if value not in champion_slices:
                label = f"slice {feature}={value}"
                checks.append(
                    Check(
                        label, None, tolerance, True, f"{label}: new slice, no champion baseline; reported, not gated"
                    )
                )
        if metric != "log_loss" and challenger.overall.get("log_loss") is not None:
            checks.append(_log_loss_check(challenger, champion))

    passed = all(check.passed for check in checks)
    return GateDecision(
        passed=passed,
        reason=_reason(passed, first_model, checks),
        checks=checks,
        first_model=first_model,
        metric=metric,
        minimum=bar,
        baseline=baseline,
        max_regression=tolerance,
        challenger_score=_number(challenger.overall.get(metric))[0],
        champion_score=_number(champion.overall.get(metric))[0] if isinstance(champion, ModelScores) else None,
        latency_p95_ms=_number(_p95(challenger))[0],
        latency_budget_ms=_number(challenger.latency_budget_ms)[0],
        latency_method=None if challenger.latency_ms is None else challenger.latency_ms.method,
    )


def _reason(passed: bool, first_model: bool, checks: list[Check]) -> str:
    by_name = {check.name: check for check in checks}
    if not passed:
        prefix = "rejected (no champion yet: absolute floor only): " if first_model else "rejected: "
        return prefix + "; ".join(check.detail for check in checks if not check.passed)
    parts = [checks[0].detail]
    if first_model:
        parts.insert(0, "no champion yet: absolute floor only")
    else:
        overall = by_name["regression_overall"]
        slices = [check for check in checks if check.name.startswith("slice ")]
        comparable = [check for check in slices if check.value is not None]
        parts.append(
            f"{overall.detail}; no slice regressed more than max_regression "
            f"({len(comparable)} of {len(slices)} slice(s) comparable)"
        )
    parts.append(by_name["latency"].detail)
    return "accepted: " + "; ".join(parts)
