"""A rollout as the model registry records it: alias ``candidate`` and ``rollout.*`` tags, all strings.

On the candidate version: ``rollout.mode`` (shadow|canary), ``rollout.state``
(running|promoted|rolled_back|stopped), ``rollout.started_at`` (ISO 8601 UTC), ``rollout.champion_version``,
``rollout.canary_share`` (the current share), ``rollout.steps`` (JSON list), ``rollout.sticky_column``,
``rollout.step_started_at`` (when the current share began), and for the latest decision
``rollout.decision``, ``rollout.reason``, ``rollout.decided_at``, ``rollout.airflow_run_id``,
``rollout.numbers`` (JSON), then ``rollout.ended_at`` when it ends. The champion gets
``rollout.last_challenge`` = ``"<candidate>: <decision>"`` when a rollout ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from include.rollout.decision import RolloutDecision, RolloutState

PREFIX = "rollout."
RUNNING, PROMOTED, ROLLED_BACK, STOPPED = "running", "promoted", "rolled_back", "stopped"
LAST_CHALLENGE = "rollout.last_challenge"


class RolloutRecordError(ValueError):
    """The candidate's ``rollout.*`` tags are missing or malformed; the message names the tag."""


def iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC (``2026-03-01T12:00:00+00:00``); raises ``ValueError`` when naive."""
    if moment.tzinfo is None:
        raise ValueError(f"a rollout time must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat()


def start_tags(state: RolloutState, sticky_column: str | None, airflow_run_id: str) -> dict[str, str]:
    """The tags that open a rollout (state running), a dict of str to str."""
    return {
        "rollout.mode": state.mode,
        "rollout.state": RUNNING,
        "rollout.started_at": iso(state.started_at),
        "rollout.champion_version": state.champion_version,
        "rollout.canary_share": repr(state.canary_share),
        "rollout.steps": json.dumps(list(state.steps)),
        "rollout.sticky_column": sticky_column or "",
        "rollout.step_started_at": iso(state.step_started_at or state.started_at),
        "rollout.decision": "",
        "rollout.reason": "started",
        "rollout.airflow_run_id": airflow_run_id,
        "rollout.numbers": "{}",
        "rollout.ended_at": "",
    }


def decision_tags(decision: RolloutDecision, decided_at: datetime, airflow_run_id: str) -> dict[str, str]:
    """The tags of one decision (``rollout.decision``, ``reason``, ``decided_at``, ``airflow_run_id``, ``numbers``)."""
    return {
        "rollout.decision": decision.action,
        "rollout.reason": decision.reason,
        "rollout.decided_at": iso(decided_at),
        "rollout.airflow_run_id": airflow_run_id,
        "rollout.numbers": json.dumps(decision.numbers, default=str, separators=(",", ":")),
    }


def state_of(candidate: str, tags: dict[str, str]) -> RolloutState:
    """The :class:`RolloutState` the candidate's tags record. Raises :class:`RolloutRecordError` naming a
    missing or malformed tag."""
    try:
        started_at = datetime.fromisoformat(tags["rollout.started_at"])
        step_started = tags.get("rollout.step_started_at")
        return RolloutState(
            candidate_version=str(candidate),
            champion_version=tags["rollout.champion_version"],
            mode=tags["rollout.mode"],
            started_at=started_at,
            canary_share=float(tags.get("rollout.canary_share") or 0.0),
            steps=tuple(float(share) for share in json.loads(tags.get("rollout.steps") or "[]")),
            step_started_at=datetime.fromisoformat(step_started) if step_started else None,
        )
    except KeyError as missing:
        raise RolloutRecordError(f"version {candidate} is aliased candidate but has no tag {missing.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise RolloutRecordError(f"version {candidate} has a malformed rollout.* tag: {exc}") from None


def recorded_decision(tags: dict[str, str]) -> dict[str, Any]:
    """The latest decision the tags record, in the shape of :meth:`RolloutDecision.to_dict` plus ``state``."""
    try:
        numbers = json.loads(tags.get("rollout.numbers") or "{}")
    except ValueError:
        numbers = {}
    return {
        "action": tags.get("rollout.decision") or None,
        "reason": tags.get("rollout.reason", ""),
        "numbers": numbers,
        "next_share": numbers.get("next_share") if isinstance(numbers, dict) else None,
        "state": tags.get("rollout.state"),
    }
