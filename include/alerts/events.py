"""One builder per event: the numbers an operator needs, in one paragraph, and the event's dedup key.

Each builder takes plain values (what the task has in hand: an exception's message, the
gate's decision dict, the drift result) and returns an :class:`~include.alerts.message.Alert`.
The dedup keys say what counts as the same event:

==================== ==============================================================
event                one alert per
==================== ==============================================================
validation_failed    Airflow run (a retry or a cleared task reports the same run)
gate_rejected        Airflow run
deploy_failed        Airflow run and version
approval_waiting     Airflow run and version
drift_retrain        champion version and triggered training run (a backfill of
                     many drifted windows triggers one run: one alert)
rollout_*            candidate version, rollout start and outcome
==================== ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.alerts.message import (
    APPROVAL_WAITING,
    DEPLOY_FAILED,
    DRIFT_RETRAIN,
    GATE_REJECTED,
    ROLLOUT_PROMOTED,
    ROLLOUT_ROLLED_BACK,
    VALIDATION_FAILED,
    Alert,
)

ROLLOUT_OUTCOMES = {"promoted": ROLLOUT_PROMOTED, "rolled_back": ROLLOUT_ROLLED_BACK}


def _number(value: Any, decimals: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else str(value)
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def validation_failed(model_name: str, run_id: str, message: str, run_url: str | None = None) -> Alert:
    """The training data of Airflow run ``run_id`` failed its Great Expectations suite; ``message``
    is the failure's text (the summary with one line per failed expectation). Nothing was trained."""
    detail = message.split(":", 1)[1] if message.startswith("data validation failed:") else message
    return Alert(
        kind=VALIDATION_FAILED,
        model_name=model_name,
        version=None,
        why=f"The training data of run {run_id} failed validation, so nothing was trained: {detail.strip()}",
        dedup_key=f"{VALIDATION_FAILED}:{model_name}:{run_id}",
        run_url=run_url,
        facts={"run id": run_id},
    )


def gate_rejected(model_name: str, run_id: str, decision: Mapping[str, Any], run_url: str | None = None) -> Alert:
    """The gate of Airflow run ``run_id`` rejected the challenger; ``decision`` is the gate's
    ``GateDecision.to_dict()`` (its ``reason`` names every failed check with value and threshold)."""
    metric = str(decision.get("metric") or "metric")
    facts = {
        "run id": run_id,
        f"challenger {metric}": _number(decision.get("challenger_score")),
        f"champion {metric}": _number(decision.get("champion_score")),
        "bar": _number(decision.get("minimum")) if decision.get("minimum") is not None else "no-skill baseline",
        "max_regression": _number(decision.get("max_regression")),
        "failed checks": ", ".join(
            str(check.get("name")) for check in decision.get("checks") or [] if not check.get("passed")
        )
        or "none",
    }
    if decision.get("latency_p95_ms") is not None:
        facts["latency p95 / budget (ms)"] = (
            f"{_number(decision.get('latency_p95_ms'), 1)} / {_number(decision.get('latency_budget_ms'), 1)}"
        )
    return Alert(
        kind=GATE_REJECTED,
        model_name=model_name,
        version=None,
        why=(
            f"The challenger trained by run {run_id} was not promoted; the champion is unchanged. "
            f"Gate {decision.get('reason') or 'rejected (no reason recorded)'}"
        ),
        dedup_key=f"{GATE_REJECTED}:{model_name}:{run_id}",
        run_url=run_url,
        facts=facts,
    )


def deploy_failed(model_name: str, version: str, run_id: str, message: str, run_url: str | None = None) -> Alert:
    """The deploy of ``version`` in Airflow run ``run_id`` failed; ``message`` is the ``DeployFailed``
    text, which says which stage failed, why, and what the endpoint serves now."""
    return Alert(
        kind=DEPLOY_FAILED,
        model_name=model_name,
        version=str(version),
        why=message,
        dedup_key=f"{DEPLOY_FAILED}:{model_name}:{run_id}:{version}",
        run_url=run_url,
        facts={"run id": run_id},
    )


def approval_waiting(
    model_name: str, version: str, run_id: str, gate_reason: str | None, run_url: str | None = None
) -> Alert:
    """The deploy of ``version`` (Airflow run ``run_id``) waits for a person to approve or reject it
    in the UI; ``gate_reason`` is the gate's accepting reason, with its numbers."""
    return Alert(
        kind=APPROVAL_WAITING,
        model_name=model_name,
        version=str(version),
        why=(
            f"Version {version} passed the gate and waits for approval before it is deployed "
            f"(Required actions in the Airflow UI). Gate {gate_reason or 'reason not recorded'}"
        ),
        dedup_key=f"{APPROVAL_WAITING}:{model_name}:{run_id}:{version}",
        run_url=run_url,
        facts={"run id": run_id},
    )


def drift_retrain(
    model_name: str,
    champion_version: str,
    window_start: str,
    window_end: str,
    reason: str,
    drift: Mapping[str, Any],
    training_run_id: str,
    training_run_url: str | None = None,
) -> Alert:
    """Drift in the window ``[window_start, window_end)`` made ``drift_monitor`` trigger the training
    run ``training_run_id`` for the champion ``champion_version``; ``reason`` is the decision's
    sentence and ``drift`` the measured numbers (``drift_share``, ``drifted_columns``,
    ``performance_drop``, ``estimated_drop``; missing ones read as n/a)."""
    columns = list(drift.get("drifted_columns") or [])
    shown = ", ".join(map(str, columns[:8])) + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
    return Alert(
        kind=DRIFT_RETRAIN,
        model_name=model_name,
        version=str(champion_version) if champion_version else None,
        why=(
            f"The traffic of {window_start}..{window_end} drifted from what champion version "
            f"{champion_version} was trained on, so retraining run {training_run_id} was triggered: {reason}"
        ),
        dedup_key=f"{DRIFT_RETRAIN}:{model_name}:{champion_version}:{training_run_id}",
        run_url=training_run_url,
        facts={
            "window": f"{window_start}..{window_end}",
            "drift share": _number(drift.get("drift_share")),
            "drifted columns": shown or "none",
            "performance drop": _number(drift.get("performance_drop")),
            "estimated drop": _number(drift.get("estimated_drop")),
            "training run": training_run_id,
        },
    )


def rollout_ended(
    model_name: str,
    candidate_version: str,
    champion_version: str | None,
    outcome: str,
    reason: str,
    *,
    mode: str | None = None,
    rollout_id: str | None = None,
    numbers: Mapping[str, Any] | None = None,
    run_url: str | None = None,
) -> Alert:
    """A rollout of ``candidate_version`` against ``champion_version`` ended with ``outcome``
    (``"promoted"`` or ``"rolled_back"``); ``reason`` is the decision's sentence with numbers
    (the ``rollout.reason`` tag), ``mode`` shadow or canary, ``rollout_id`` what tells two rollouts
    of one version apart (the ``rollout.started_at`` tag), ``numbers`` flat label/value pairs
    to show (e.g. labelled rows, metric estimates). Raises ``ValueError`` for another outcome."""
    if outcome not in ROLLOUT_OUTCOMES:
        raise ValueError(f"rollout outcome must be one of {', '.join(ROLLOUT_OUTCOMES)}, got {outcome!r}")
    kind = ROLLOUT_OUTCOMES[outcome]
    now_served = candidate_version if outcome == "promoted" else champion_version
    head = (
        f"The {mode + ' ' if mode else ''}rollout of version {candidate_version} "
        f"{'promoted it to champion' if outcome == 'promoted' else 'was rolled back'}"
        f"{f'; version {now_served} answers all traffic' if now_served else ''}."
    )
    facts = {"candidate": str(candidate_version), "champion before": str(champion_version or "none")}
    if mode:
        facts["mode"] = mode
    facts.update({str(label): _number(value) for label, value in (numbers or {}).items()})
    return Alert(
        kind=kind,
        model_name=model_name,
        version=str(candidate_version),
        why=f"{head} {reason}",
        dedup_key=f"{kind}:{model_name}:{candidate_version}:{rollout_id or ''}",
        run_url=run_url,
        facts=facts,
    )
