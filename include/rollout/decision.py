"""The rollout decision: promote, continue, step (canary) or roll back, from the rollout's live rows.

:func:`decide` is pure: the inference log's rows since the rollout started
(:func:`include.monitoring.inference_log.read_window`, with labels), the dataset spec, its
``rollout:`` section (:class:`include.data.rollout_spec.RolloutSpec`), the rollout's state, the time of the
decision and the candidate's guardrail readings go in; a :class:`RolloutDecision` comes out. The rules, in
the order they are applied:

1. **Guardrails**, judged before any label arrives: the candidate's error rate above ``max_error_rate`` or
   its p99 latency above ``max_p99_latency_ms`` (both from the server's ``/metrics``, once it answered
   :data:`MIN_GUARDRAIL_REQUESTS` requests), or its prediction gap above ``max_prediction_gap`` (once each
   version has :data:`MIN_GAP_ROWS` predictions), roll back. The gap (:func:`prediction_gap`) is, for a
   binary model, the difference of the mean P(positive) of the two versions; for a multiclass one, the total
   variation distance of their predicted class shares; for a regression, the difference of the mean
   predictions in standard deviations of the champion's predictions.
2. **Labels**: nothing is decided on labels before each version has ``min_labelled_rows`` of them
   (**continue**). Then the gate metric (the spec's ``gate.metric``) of each version with a bootstrap confidence
   interval of the difference (:mod:`include.rollout.bootstrap`): *paired* in shadow (the same rows, the
   champion's answer against the candidate's ``other_*`` columns), *two-sample* in a canary (the rows each
   version answered). Overall and per slice of the spec's ``slice_feature``; a slice with fewer than
   :func:`slice_min_rows` labelled rows per version is reported, not decided on.
   - **roll back** when the upper bound of the difference is below ``-margin`` overall or on a decided slice
     (worse, with confidence);
   - **non-inferior** when the lower bound is above ``-margin`` overall and no decided slice's estimate
     is below ``-margin`` (a slice's interval is wide: its estimate holds a promotion back, only its
     interval rolls back) (overall, a non-inferiority test at one-sided level (1 - confidence) / 2: Piaggio et al., "Reporting of
     noninferiority and equivalence randomized trials", JAMA 2012; Wellek, *Testing Statistical Hypotheses
     of Equivalence and Noninferiority*, 2010). A non-inferior shadow is **promoted**. A canary needs, for its current share, ``min_labelled_rows`` rows answered by the candidate since that share began (each share
     is seen at work before the next): then it **steps** to the next share, or is **promoted** at the last.
   - otherwise, and with too few labels, **continue**.
3. **Time**: a rollout still undecided ``max_duration_hours`` after it started is rolled back, and the reason
   says so.

Every number goes into :attr:`RolloutDecision.numbers`; the bootstrap's seed is fixed, so the same rows give
the same decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from include.monitoring.inference_log.store import OTHER_PREFIX, OTHER_VERSION_COLUMN
from include.rollout import bootstrap

if TYPE_CHECKING:
    import pandas as pd

    from include.data.rollout_spec import RolloutSpec
    from include.data.spec import DatasetSpec

ACTIONS = ("promote", "continue", "step", "rollback")
MIN_GUARDRAIL_REQUESTS = 100
MIN_GAP_ROWS = 100
_SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RolloutState:
    """A running rollout as the registry records it: the two versions, the ``mode`` (shadow|canary), when it
    started, the canary's current ``canary_share`` and ``steps``, and when the current share began
    (``step_started_at``; None: at the start). Times are timezone-aware."""

    candidate_version: str
    champion_version: str
    mode: str
    started_at: datetime
    canary_share: float = 0.0
    steps: tuple[float, ...] = ()
    step_started_at: datetime | None = None


@dataclass(frozen=True)
class GuardrailReadings:
    """The candidate's serving health from the server's ``/metrics``: ``requests`` it answered or scored,
    its ``error_rate`` (a share) and ``p99_latency_ms``; None where not measured."""

    requests: int = 0
    error_rate: float | None = None
    p99_latency_ms: float | None = None


@dataclass(frozen=True)
class RolloutDecision:
    """``action`` (one of :data:`ACTIONS`), a one-sentence ``reason`` with its numbers, every number in
    ``numbers`` (JSON-ready), and the ``next_share`` of a canary step (None otherwise)."""

    action: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)
    next_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"action", "reason", "numbers", "next_share"}``, JSON-ready."""
        return {"action": self.action, "reason": self.reason, "numbers": self.numbers, "next_share": self.next_share}

    def table(self) -> str:
        """The comparison as a fixed-width text table for a log: one line overall, one per slice."""
        header = f"{'scope':<24} {'rows cand':>9} {'rows champ':>10} {'candidate':>9} {'champion':>9} "
        header += f"{'diff':>8} {'ci low':>8} {'ci high':>8}  decided"
        lines = [header]
        scopes = [("overall", self.numbers.get("overall"))]
        scopes += list((self.numbers.get("slices") or {}).items())
        for name, row in scopes:
            if not row:
                continue
            cells = [_fmt(row.get(key)) for key in ("candidate", "champion", "difference", "low", "high")]
            lines.append(
                f"{str(name)[:24]:<24} {row['candidate_rows']:>9} {row['champion_rows']:>10} "
                + " ".join(f"{cell:>9}" if i < 2 else f"{cell:>8}" for i, cell in enumerate(cells))
                + f"  {'yes' if row.get('decided', True) else 'no'}"
            )
        guardrails = self.numbers.get("guardrails") or {}
        lines.append("guardrails: " + ", ".join(f"{key}={_fmt(value)}" for key, value in guardrails.items()))
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def slice_min_rows(min_labelled_rows: int) -> int:
    """Labelled rows per version a slice needs before it counts in the decision: a quarter of
    ``min_labelled_rows``, at least 30. Returns an int."""
    return max(30, math.ceil(min_labelled_rows / 4))


def prediction_gap(task: str, champion: pd.DataFrame, candidate: pd.DataFrame, classes=()) -> float | None:
    """How far the candidate's predictions are from the champion's, before any label (see the module's rule 1).

    ``champion`` and ``candidate`` hold the output columns (``probability``, ``prediction``) of each
    version's predictions. Returns a float >= 0, or None with fewer than :data:`MIN_GAP_ROWS` rows on a side.
    """
    if len(champion) < MIN_GAP_ROWS or len(candidate) < MIN_GAP_ROWS:
        return None
    if task == "binary":
        return abs(
            float(candidate["probability"].astype(float).mean()) - float(champion["probability"].astype(float).mean())
        )
    if task == "multiclass":
        first = champion["prediction"].astype(str).value_counts(normalize=True)
        second = candidate["prediction"].astype(str).value_counts(normalize=True)
        return float(0.5 * first.subtract(second, fill_value=0.0).abs().sum())
    base = champion["prediction"].astype(float)
    spread = float(base.std()) or 1.0
    return abs(float(candidate["prediction"].astype(float).mean()) - float(base.mean())) / spread


def _outputs(frame: pd.DataFrame, prefix: str = "") -> dict[str, np.ndarray]:
    names = [name for name in frame.columns if name.startswith(prefix + "prob") or name == prefix + "prediction"]
    return {name[len(prefix) :]: frame[name].to_numpy() for name in names}


def _scored(frame: pd.DataFrame, spec: DatasetSpec, prefix: str = "") -> bootstrap.Scored:
    from include.data.cast import target_array

    slices = None
    if spec.slice_feature and spec.slice_feature in frame.columns:
        slices = frame[spec.slice_feature].astype(object).where(frame[spec.slice_feature].notna(), "(missing)")
        slices = slices.astype(str).to_numpy(dtype=object)
    return bootstrap.Scored(target_array(frame["label"], spec), _outputs(frame, prefix), slices)


def _versions(frame: pd.DataFrame, state: RolloutState) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(champion rows, candidate rows) of the rollout; in shadow both sides are the same rows."""
    version = frame["model_version"].astype(str)
    if state.mode == "shadow":
        other = frame.get(OTHER_VERSION_COLUMN)
        paired = (
            frame[(version == state.champion_version) & (other.astype(str) == state.candidate_version)]
            if other is not None
            else frame.iloc[:0]
        )
        metric_column = OTHER_PREFIX + ("probability" if "probability" in frame.columns else "prediction")
        if metric_column in paired.columns:
            paired = paired[paired[metric_column].notna()]
        else:
            paired = paired.iloc[:0]
        candidate = paired[[c for c in paired.columns if not c.startswith("prob") and c != "prediction"]]
        candidate = candidate.rename(
            columns={
                c: c[len(OTHER_PREFIX) :]
                for c in paired.columns
                if c.startswith(OTHER_PREFIX) and c != OTHER_VERSION_COLUMN
            }
        )
        return paired, candidate
    return frame[version == state.champion_version], frame[version == state.candidate_version]


def decide(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    rollout: RolloutSpec,
    state: RolloutState,
    now: datetime,
    guardrails: GuardrailReadings | None = None,
) -> RolloutDecision:
    """Decide what the rollout does next (see the module's docstring for the rules).

    ``frame`` is the inference log since ``state.started_at`` with labels (``label`` missing where none
    arrived). Returns a :class:`RolloutDecision`. Raises ``ValueError`` for an unknown mode or a metric the
    task has no live comparison for, and :class:`include.data.cast.CastError` for labels the task cannot read.
    """
    if state.mode not in ("shadow", "canary"):
        raise ValueError(f"rollout mode must be shadow or canary, got {state.mode!r}")
    guardrails = guardrails or GuardrailReadings()
    limits = rollout.guardrails
    metric = spec.gate.metric
    elapsed_hours = (now - state.started_at).total_seconds() / 3600
    champion_rows, candidate_rows = _versions(frame, state)
    gap = prediction_gap(spec.task, champion_rows, candidate_rows, spec.classes)
    measured = guardrails.requests >= MIN_GUARDRAIL_REQUESTS
    numbers: dict[str, Any] = {
        "mode": state.mode,
        "metric": metric,
        "margin": rollout.margin,
        "confidence": rollout.confidence,
        "min_labelled_rows": rollout.min_labelled_rows,
        "elapsed_hours": round(elapsed_hours, 3),
        "max_duration_hours": rollout.max_duration_hours,
        "guardrails": {
            "candidate_requests": guardrails.requests,
            "error_rate": guardrails.error_rate,
            "max_error_rate": limits.max_error_rate,
            "p99_latency_ms": guardrails.p99_latency_ms,
            "max_p99_latency_ms": limits.max_p99_latency_ms,
            "prediction_gap": None if gap is None else round(gap, 6),
            "max_prediction_gap": limits.max_prediction_gap,
        },
    }
    if state.mode == "canary":
        numbers["canary_share"] = state.canary_share
        numbers["canary_steps"] = list(state.steps)

    def made(action: str, reason: str, next_share: float | None = None) -> RolloutDecision:
        return RolloutDecision(action, reason, numbers, next_share)

    # 1. guardrails: no label needed
    if measured and guardrails.error_rate is not None and guardrails.error_rate > limits.max_error_rate:
        return made(
            "rollback",
            f"guardrail broken: the candidate's error rate {guardrails.error_rate:.2%} over "
            f"{guardrails.requests} requests is above the maximum {limits.max_error_rate:.2%}",
        )
    if measured and guardrails.p99_latency_ms is not None and guardrails.p99_latency_ms > limits.max_p99_latency_ms:
        return made(
            "rollback",
            f"guardrail broken: the candidate's p99 latency {guardrails.p99_latency_ms:.0f} ms is above the "
            f"maximum {limits.max_p99_latency_ms:.0f} ms",
        )
    if gap is not None and gap > limits.max_prediction_gap:
        return made(
            "rollback",
            f"guardrail broken: the prediction gap between candidate and champion is {gap:.3f} "
            f"({len(candidate_rows)} vs {len(champion_rows)} predictions), above the maximum {limits.max_prediction_gap:.3f}",
        )

    # 2. labels
    decision = _judge(champion_rows, candidate_rows, spec, rollout, state, numbers, made)
    # 3. time
    if decision.action == "continue" and elapsed_hours > rollout.max_duration_hours:
        return made(
            "rollback",
            f"no decision within the maximum duration of {rollout.max_duration_hours:g} h "
            f"({elapsed_hours:.1f} h elapsed): {decision.reason}",
        )
    return decision


def _judge(champion_rows, candidate_rows, spec, rollout, state, numbers, made) -> RolloutDecision:
    metric, margin, need = spec.gate.metric, rollout.margin, rollout.min_labelled_rows
    champion_labelled = (
        champion_rows[champion_rows["label"].notna()] if "label" in champion_rows else champion_rows.iloc[:0]
    )
    candidate_labelled = (
        candidate_rows[candidate_rows["label"].notna()] if "label" in candidate_rows else candidate_rows.iloc[:0]
    )
    n_champion, n_candidate = len(champion_labelled), len(candidate_labelled)
    numbers["labelled_rows"] = {"candidate": n_candidate, "champion": n_champion}
    step_rows = n_candidate
    if state.mode == "canary" and state.step_started_at is not None and n_candidate:
        step_rows = int((candidate_labelled["timestamp"] >= state.step_started_at).sum())
    if state.mode == "canary":
        numbers["step_labelled_rows"] = step_rows
    if min(n_champion, n_candidate) < need:
        return made(
            "continue",
            f"too few labelled rows to decide yet: {n_candidate} for the candidate and {n_champion} for the "
            f"champion, {need} needed per version",
        )

    options = {"classes": spec.classes, "confidence": rollout.confidence}
    if state.mode == "shadow":
        champion = _scored(champion_labelled, spec)
        candidate = _scored(candidate_labelled, spec)
        overall, slices = bootstrap.paired(spec.task, metric, champion, candidate.outputs, **options)
    else:
        overall, slices = bootstrap.two_sample(
            spec.task, metric, _scored(champion_labelled, spec), _scored(candidate_labelled, spec), **options
        )
    slice_need = slice_min_rows(need)
    decided = {
        name: interval.low is not None and min(interval.candidate_rows, interval.champion_rows) >= slice_need
        for name, interval in slices.items()
    }
    numbers["overall"] = overall.to_dict()
    numbers["slices"] = {name: {**interval.to_dict(), "decided": decided[name]} for name, interval in slices.items()}
    numbers["slice_min_rows"] = slice_need
    numbers["resamples"], numbers["seed"] = bootstrap.RESAMPLES, bootstrap.SEED
    level = f"{rollout.confidence:.0%} CI"
    where = f"{spec.slice_feature}=" if spec.slice_feature else ""

    def described(interval) -> str:
        return (
            f"{metric} candidate {interval.candidate:.4f} vs champion {interval.champion:.4f}, difference "
            f"{interval.difference:+.4f} ({level} {interval.low:+.4f} to {interval.high:+.4f})"
        )

    if overall.low is None:
        return made("continue", f"{metric} is not yet measurable on the {n_candidate} + {n_champion} labelled rows")
    worse = [("overall", overall)] if overall.high < -margin else []
    worse += [
        (where + name, interval) for name, interval in slices.items() if decided[name] and interval.high < -margin
    ]
    if worse:
        scope, interval = worse[0]
        return made(
            "rollback",
            f"the candidate is worse {'overall' if scope == 'overall' else 'on ' + scope}: {described(interval)}; "
            f"the upper bound is below -{margin:g} on {n_candidate} candidate and {n_champion} champion labelled rows",
        )
    if overall.low <= -margin:
        return made(
            "continue",
            f"not yet shown non-inferior overall ({described(overall)}; the lower bound must be above -{margin:g})",
        )
    # A slice holds a fraction of the rows, so its interval is wide: it blocks a promotion while its
    # estimate is worse than the margin, and rolls back (above) only when its interval is.
    behind = [(name, interval) for name, interval in slices.items() if decided[name] and interval.difference < -margin]
    if behind:
        name, interval = behind[0]
        return made(
            "continue", f"behind on {where}{name} ({described(interval)}; its estimate must be above -{margin:g})"
        )
    shown = (
        f"non-inferior overall: {described(overall)}, lower bound above -{margin:g}; no decided slice behind "
        f"by more than {margin:g} ({sum(decided.values())} slice(s))"
    )
    if state.mode == "shadow":
        return made("promote", f"{shown}, on {n_candidate} labelled rows")
    if step_rows < need:
        return made(
            "continue",
            f"{shown}; {step_rows} of {need} labelled rows answered by the candidate at share {state.canary_share:g}",
        )
    later = [share for share in state.steps if share > state.canary_share + _SHARE_TOLERANCE]
    if later:
        numbers["next_share"] = later[0]
        return made(
            "step",
            f"{shown}, with {step_rows} labelled rows at share {state.canary_share:g}: step to {later[0]:g}",
            later[0],
        )
    return made("promote", f"{shown}, with {step_rows} labelled rows at the last share {state.canary_share:g}")
