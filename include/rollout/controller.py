"""Starting a rollout, and carrying out the rollout decision: serving, registry tags, aliases.

:func:`deploy_version` is the deploy step of ``ml_training``: ``direct`` deploys as before
(:func:`include.pipeline.deploy`), ``shadow`` and ``canary`` start a rollout (:func:`start_rollout`). With no
champion yet there is nothing to compare with, and a rollout falls back to a direct deploy (the log and the
result say so).

:func:`run_controller` is the ``ml_rollout`` task: it reads the running rollout (alias ``candidate`` and its
``rollout.*`` tags, :mod:`include.rollout.records`), makes the server match the registry (a restarted server
that lost its candidate gets the recorded rollout again), decides (:func:`include.rollout.decision.decide`),
or takes an operator's forced decision, and acts:

- **continue**: the decision is tagged;
- **step**: the server's canary share moves to the next step, then the tags;
- **rollback**: the champion alone answers again (``Deployer.end_rollout``);
- **promote**: the candidate is served alone, smoke-tested and made champion by the deploy step itself
  (:func:`include.pipeline.deploy`: ``champion`` moves only after that); a failed promotion restores the
  champion and ends the rollout as rolled back, with the reason.

An ending rollout tags ``rollout.state`` and ``rollout.ended_at`` on the candidate and
``rollout.last_challenge`` on the champion, then removes the alias ``candidate``: alias moves come last, under
:func:`include.registry.promotion_lock`. A retry is safe: a decision already recorded by the same Airflow run
is returned as recorded, a promotion that moved ``champion`` before a crash is recorded as promoted, and a
rollout whose end was recorded loses its alias.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from include.data.spec import DatasetSpec
from include.rollout import records
from include.rollout.decision import RolloutDecision, RolloutState
from include.settings import Settings

log = logging.getLogger(__name__)

FORCED_ACTIONS = ("promote", "rollback")
MODES = ("direct", "shadow", "canary")


class RolloutPromotionFailed(RuntimeError):
    """Promoting the candidate failed; the champion is served again and the rollout ended as rolled back.

    ``decision`` is what :func:`run_controller` would have returned: the rollback, its reason and versions.
    """

    def __init__(self, message: str, decision: dict[str, Any]):
        super().__init__(message)
        self.decision = decision


def _steps(spec_steps: tuple[float, ...], first_share: float | None) -> tuple[float, ...]:
    if first_share is None:
        return tuple(spec_steps)
    return (float(first_share), *(share for share in spec_steps if share > first_share))


def _config(state: RolloutState, sticky_column: str | None):
    from include.deployment.rollout_config import RolloutConfig

    share = state.canary_share if state.mode == "canary" else 0.0
    return RolloutConfig(state.candidate_version, state.mode, share, sticky_column or None)


def deploy_version(
    settings: Settings,
    spec: DatasetSpec,
    data_ref: dict[str, Any],
    version: str,
    *,
    mode: str = "spec",
    canary_share: float | None = None,
    airflow_run_id: str = "",
    kubernetes_client=None,
) -> dict[str, Any]:
    """Deploy a gated ``version`` as ``mode`` says: ``direct``, ``shadow``, ``canary`` or ``spec`` (the dataset
    spec's ``rollout.mode``). ``canary_share`` (0 < share <= 1) replaces the first canary step.

    Returns :func:`include.pipeline.deploy`'s dict with ``mode`` (what happened) for a direct deploy, or
    :func:`start_rollout`'s. Raises ``ValueError`` for an unknown mode and what those two raise.
    """
    from include import pipeline, registry, tracking

    mode = spec.rollout.mode if mode in (None, "spec") else mode
    if mode not in MODES:
        raise ValueError(f"rollout mode must be one of direct, shadow, canary or spec, got {mode!r}")
    tracking.configure(settings)
    note = None
    if mode != "direct":
        champion = registry.alias_version(settings.model_name, registry.CHAMPION)
        if champion is None:
            note = f"no champion yet: a {mode} rollout needs one to compare with, so version {version} is deployed directly"
        elif champion == str(version):
            note = f"version {version} is the champion already: nothing to roll out"
        else:
            return start_rollout(
                settings,
                spec,
                data_ref,
                version,
                mode,
                canary_share=canary_share,
                airflow_run_id=airflow_run_id,
                kubernetes_client=kubernetes_client,
            )
        log.warning("%s", note)
    result = pipeline.deploy(settings, spec, data_ref, version, kubernetes_client=kubernetes_client)
    return {**result, "mode": "direct", **({"note": note} if note else {})}


def start_rollout(
    settings: Settings,
    spec: DatasetSpec,
    data_ref: dict[str, Any],
    version: str,
    mode: str,
    *,
    canary_share: float | None = None,
    airflow_run_id: str = "",
    kubernetes_client=None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Serve ``version`` beside the champion as a ``shadow`` or ``canary`` candidate, tag it, alias it ``candidate``.

    The candidate's smoke test runs on held-out rows of ``data_ref`` (:func:`include.pipeline.smoke_sample`).
    A rollout of another candidate still running is stopped first (``rollout.state`` stopped). A retry for the
    same candidate finds it running and changes nothing. Returns ``{"model_name", "version", "mode",
    "champion_version", "canary_share", "steps", "url", "started_at"}``. Raises ``ValueError`` without a
    champion, :class:`include.deployment.DeployFailed` when the candidate cannot be served (the champion
    answers alone again) and ``TimeoutError`` when the promotion lock stays taken.
    """
    from include import pipeline, registry, tracking
    from include.deployment import deployer_for

    tracking.configure(settings)
    name, version = settings.model_name, registry.validate_version(version)
    deployer = deployer_for(settings, kubernetes_client)
    with registry.promotion_lock(settings, name):
        champion = registry.alias_version(name, registry.CHAMPION)
        if champion is None:
            raise ValueError(f"{name} has no champion: a rollout needs one (deploy_version falls back to direct)")
        running = registry.alias_version(name, registry.CANDIDATE)
        if running == version and registry.version_tags(name, version).get("rollout.state") == records.RUNNING:
            state = records.state_of(version, registry.version_tags(name, version))
            log.info("version %s is rolling out already (%s): nothing to start", version, state.mode)
            return _started(settings, state, deployer.endpoint_url(name))
        if running is not None:
            _end(settings, deployer, running, records.STOPPED, f"superseded by version {version}", airflow_run_id)
        started = (now or datetime.now(UTC)).astimezone(UTC)
        steps = _steps(spec.rollout.canary_steps, canary_share) if mode == "canary" else ()
        state = RolloutState(version, champion, mode, started, steps[0] if steps else 0.0, steps, started)
        sample, expected = pipeline.smoke_sample(settings, spec, data_ref, version)
        url = deployer.start_rollout(name, _config(state, spec.id_column), sample, expected)
        registry.set_version_tags(name, version, records.start_tags(state, spec.id_column, airflow_run_id))
        registry.set_alias(name, registry.CANDIDATE, version)
    log.info("rollout of %s version %s started: %s against champion %s", name, version, mode, champion)
    return _started(settings, state, url)


def _started(settings: Settings, state: RolloutState, url: str) -> dict[str, Any]:
    return {
        "model_name": settings.model_name,
        "version": state.candidate_version,
        "mode": state.mode,
        "champion_version": state.champion_version,
        "canary_share": state.canary_share,
        "steps": list(state.steps),
        "url": url,
        "started_at": records.iso(state.started_at),
    }


def _end(settings, deployer, candidate: str, end_state: str, reason: str, airflow_run_id: str, recorded=False) -> None:
    """End a rollout in the registry: the candidate's tags (the decision too unless ``recorded``), the champion's
    ``rollout.last_challenge``, then the alias ``candidate`` goes. The server goes back to the champion alone
    unless the candidate was promoted."""
    from include import registry

    name = settings.model_name
    if end_state != records.PROMOTED:
        deployer.end_rollout(name)
    tags = registry.version_tags(name, candidate)
    now = records.iso(datetime.now(UTC))
    action = "promote" if end_state == records.PROMOTED else "rollback"
    decision = (
        {}
        if recorded
        else {
            "rollout.decision": action,
            "rollout.reason": reason,
            "rollout.decided_at": now,
            "rollout.airflow_run_id": airflow_run_id,
        }
    )
    registry.set_version_tags(name, candidate, {"rollout.state": end_state, "rollout.ended_at": now, **decision})
    champion = tags.get("rollout.champion_version")
    if champion:
        registry.set_version_tags(name, champion, {records.LAST_CHALLENGE: f"{candidate}: {action}"})
    registry.delete_alias(name, registry.CANDIDATE)
    log.info("rollout of %s version %s ended: %s (%s)", name, candidate, end_state, reason)


def run_controller(
    settings: Settings,
    spec: DatasetSpec,
    *,
    now: datetime,
    airflow_run_id: str,
    force: str | None = None,
    force_reason: str = "",
    actor: str = "airflow",
    kubernetes_client=None,
) -> dict[str, Any] | None:
    """Decide on the running rollout and carry the decision out (see the module's docstring).

    ``now`` is the decision's time (the Airflow run's, so a retry reads the same window); ``force`` is None,
    ``"promote"`` or ``"rollback"`` (an operator's decision, recorded with ``actor`` and ``force_reason``).
    Returns the decision (:meth:`RolloutDecision.to_dict` plus ``candidate_version``, ``champion_version``,
    ``state`` and ``server``), or None when no rollout runs. Raises ``ValueError`` for an unknown ``force``,
    :class:`records.RolloutRecordError` for broken tags, :class:`RolloutPromotionFailed` when the promotion's
    deploy failed (recorded as rolled back first) and ``TimeoutError`` when the promotion lock stays taken.
    """
    from include import registry, tracking
    from include.deployment import deployer_for

    if force not in (None, "", "none", *FORCED_ACTIONS):
        raise ValueError(f"force must be none, promote or rollback, got {force!r}")
    force = None if force in (None, "", "none") else force
    tracking.configure(settings)
    name = settings.model_name
    deployer = deployer_for(settings, kubernetes_client)
    with registry.promotion_lock(settings, name):
        candidate = registry.alias_version(name, registry.CANDIDATE)
        if candidate is None:
            return None
        tags = registry.version_tags(name, candidate)
        state = records.state_of(candidate, tags)
        base = {
            "candidate_version": candidate,
            "champion_version": state.champion_version,
            "mode": state.mode,
            "started_at": records.iso(state.started_at),
        }
        if tags.get("rollout.state") != records.RUNNING:
            # its end was recorded but the alias survived (a crash in between): finish the end
            registry.delete_alias(name, registry.CANDIDATE)
            return {**records.recorded_decision(tags), **base, "server": "unchanged"}
        champion = registry.alias_version(name, registry.CHAMPION)
        if champion == candidate:
            # the promotion's deploy moved champion, then the run stopped before recording it
            _end(settings, deployer, candidate, records.PROMOTED, "promoted", airflow_run_id)
            return {**records.recorded_decision(registry.version_tags(name, candidate)), **base, "server": "candidate"}
        if champion != state.champion_version:
            reason = f"the champion changed from version {state.champion_version} to {champion} during the rollout"
            _end(settings, deployer, candidate, records.STOPPED, reason, airflow_run_id)
            return {
                "action": "rollback",
                "reason": reason,
                "numbers": {},
                "next_share": None,
                **base,
                "state": "stopped",
            }
        if force is None and tags.get("rollout.airflow_run_id") == airflow_run_id and tags.get("rollout.decision"):
            log.info("this run decided already (a retry): %s", tags.get("rollout.reason"))
            server = _reconcile(settings, spec, deployer, state, tags)
            return {**records.recorded_decision(tags), **base, "server": server}
        server = _reconcile(settings, spec, deployer, state, tags)
        decision = _decide(settings, spec, deployer, state, now)
        if force:
            numbers = {**decision.numbers, "forced_by": actor, "undecided_action": decision.action}
            decision = RolloutDecision(force, f"forced by {actor}: {force_reason or 'no reason given'}", numbers)
        log.info("rollout of version %s: %s: %s\n%s", candidate, decision.action, decision.reason, decision.table())
        try:
            outcome = _act(settings, spec, deployer, state, tags, decision, now, airflow_run_id, kubernetes_client)
        except RolloutPromotionFailed as failed:
            failed.decision = {**failed.decision, **base, "state": records.ROLLED_BACK, "server": server}
            raise
    return {**decision.to_dict(), **base, "state": outcome, "server": server}


def _reconcile(settings, spec, deployer, state: RolloutState, tags: dict[str, str]) -> str:
    """Make the server do what the registry records; returns what was found (``"consistent"``, or what was done)."""
    from include import pipeline

    name = settings.model_name
    expected = _config(state, tags.get("rollout.sticky_column"))
    actual = deployer.rollout_status(name)
    if actual == expected:
        return "consistent"
    if actual is not None and actual.candidate_version == expected.candidate_version:
        log.warning("the server runs %s, the registry records %s: updating the server", actual, expected)
        deployer.update_rollout(name, expected)
        return f"updated from {actual.as_json()}"
    log.warning("the server runs %s, the registry records %s (a restart?): re-applying the rollout", actual, expected)
    data_ref = pipeline.data_ref_of(settings, state.candidate_version)
    sample, expected_frame = pipeline.smoke_sample(settings, spec, data_ref, state.candidate_version)
    deployer.start_rollout(name, expected, sample, expected_frame)
    return f"re-applied (the server had {json.dumps(None if actual is None else actual.as_json())})"


def _decide(settings, spec, deployer, state: RolloutState, now: datetime) -> RolloutDecision:
    import pandas as pd

    from include.monitoring.inference_log import read_window
    from include.rollout.decision import GuardrailReadings, decide
    from include.rollout.guardrails import readings

    if now > state.started_at:
        frame = read_window(settings.inference_log, state.started_at, now, with_labels=True)
    else:
        frame = pd.DataFrame({"model_version": [], "label": [], "timestamp": []})
    try:
        health = readings(
            deployer.metrics_text(settings.model_name), state.mode, state.candidate_version, state.champion_version
        )
    except Exception as exc:  # noqa: BLE001 - unreadable metrics: the guardrails are not measured, the labels still decide
        log.warning("the server's metrics could not be read (%s): guardrails not measured", exc)
        health = GuardrailReadings()
    return decide(frame, spec, spec.rollout, state, now, health)


def _act(settings, spec, deployer, state, tags, decision: RolloutDecision, now, run_id, kubernetes_client) -> str:
    """Carry ``decision`` out; returns the rollout's state after it."""
    from include import pipeline, registry

    name, candidate = settings.model_name, state.candidate_version
    recorded = records.decision_tags(decision, now, run_id)
    if decision.action == "continue":
        registry.set_version_tags(name, candidate, recorded)
        return records.RUNNING
    if decision.action == "step":
        stepped = replace(state, canary_share=float(decision.next_share), step_started_at=now)
        deployer.update_rollout(name, _config(stepped, tags.get("rollout.sticky_column")))
        registry.set_version_tags(
            name,
            candidate,
            {
                **recorded,
                "rollout.canary_share": repr(stepped.canary_share),
                "rollout.step_started_at": records.iso(now),
            },
        )
        return records.RUNNING
    if decision.action == "rollback":
        registry.set_version_tags(name, candidate, recorded)
        _end(settings, deployer, candidate, records.ROLLED_BACK, decision.reason, run_id, recorded=True)
        return records.ROLLED_BACK
    # promote: the deploy step serves the candidate alone, smoke-tests it, then moves champion
    from include.deployment import DeployFailed

    # recorded first, so that the champion's history says a rollout promoted it (include.registry)
    registry.set_version_tags(name, candidate, recorded)
    try:
        pipeline.deploy(settings, spec, pipeline.data_ref_of(settings, candidate), candidate, kubernetes_client)
    except (DeployFailed, pipeline.PromotionRefused) as failed:
        reason = f"promotion failed: {failed}"
        registry.set_version_tags(
            name, candidate, {**recorded, "rollout.decision": "rollback", "rollout.reason": reason}
        )
        _end(settings, deployer, candidate, records.ROLLED_BACK, reason, run_id, recorded=True)
        if isinstance(failed, DeployFailed):
            rolled_back = {**decision.to_dict(), "action": "rollback", "reason": reason}
            raise RolloutPromotionFailed(f"version {candidate} was not promoted: {failed}", rolled_back) from failed
        return records.ROLLED_BACK
    _end(settings, deployer, candidate, records.PROMOTED, decision.reason, run_id, recorded=True)
    return records.PROMOTED
