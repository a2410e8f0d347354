"""The steps of the training pipeline, as plain functions of references.

Each DAG task is a thin call into one of these: they take and return small,
JSON-friendly references (dataset version, MLflow run id, model version),
never data frames, and they are idempotent, so a retried or cleared task gives
the same result and no duplicate side effect.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, timedelta
from typing import Any

from include.data.spec import DatasetSpec
from include.settings import Settings

log = logging.getLogger(__name__)

SMOKE_TEST_ROWS = 20


class ValidationFailed(RuntimeError):
    """The snapshot broke its expectation suite; the message lists every failed expectation."""


class PromotionRefused(RuntimeError):
    """The champion changed after this run's gate and the challenger does not beat the new one;
    nothing was deployed or promoted. An outcome like a gate rejection, not a fault."""


# the gate tag naming the champion a challenger was compared against ("none": there was none)
GATED_AGAINST_TAG = "gate.champion_version"
# the gate's whole decision (every check with its value and threshold) beside its tags on the run
GATE_DECISION_ARTIFACT = "gate/decision.json"


# ---------------------------------------------------------------------- data
def training_window(window_end: str | None, days: int, run_day: date) -> tuple[date, date]:
    """``[start, end)`` of the training window: ``days`` daily partitions ending on ``window_end``
    (inclusive), or on the day before the run when no end is given.

    Returns two ``datetime.date``. Raises ``ValueError`` when ``days`` < 1 or ``window_end`` is not an ISO date.
    """
    if days < 1:
        raise ValueError(f"training_window_days must be >= 1, got {days}")
    last_day = date.fromisoformat(window_end) if window_end else run_day - timedelta(days=1)
    end = last_day + timedelta(days=1)
    return end - timedelta(days=days), end


def snapshot(settings: Settings, spec: DatasetSpec, start: date, end: date) -> dict[str, Any]:
    """Freeze the window's partitions as a DVC-tracked dataset version; returns its reference."""
    from include.data.partitions import read_window
    from include.data.versioning import DataRegistry

    frame = read_window(spec, start, end)
    registry = DataRegistry(settings.data_registry, settings.dvc_remote, settings.data_registry_remote)
    registry.ensure()
    ref = registry.snapshot(frame, spec.name, start, end)
    log.info("dataset %s %s..%s: %d rows, md5 %s at rev %s", spec.name, start, end, ref.rows, ref.md5, ref.rev)
    return ref.to_dict()


def load_snapshot(settings: Settings, data_ref: dict[str, Any]):
    """The DataFrame a :meth:`DatasetRef.to_dict` dict names; :func:`include.data.versioning.load` errors pass through."""
    from include.data.versioning import DataRegistry, DatasetRef

    ref = DatasetRef.from_dict(data_ref)
    return DataRegistry(ref.repo, settings.dvc_remote).load(ref)


def validate(settings: Settings, spec: DatasetSpec, data_ref: dict[str, Any]) -> dict[str, Any]:
    """Run the dataset's expectation suite on the snapshot; the result is kept by content hash.

    Returns the outcome's :meth:`~include.validation.run.ValidationOutcome.to_dict`. Raises
    :class:`ValidationFailed` when an expectation fails.
    """
    from include.validation.run import validate as run_suite

    frame = load_snapshot(settings, data_ref)
    result_path = settings.path("validation", spec.name, f"{data_ref['md5']}.json")
    result_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = run_suite(frame, spec, result_path)
    log.info("%s", outcome.summary())
    if not outcome.success:
        raise ValidationFailed(outcome.summary())
    return outcome.to_dict()


# ---------------------------------------------------------------------- model
def gate_thresholds(
    spec: DatasetSpec, metric: str | None = None, minimum: float | None = None, max_regression: float | None = None
) -> tuple[str, float | None, float]:
    """(metric, bar, max_regression) for a run: each override (the trigger form's) or the spec's ``gate``.

    The spec's bar applies to the spec's metric only: a run that gates on another
    metric without a bar of its own must beat the no-skill baseline. Returns a tuple (str, float or None, float).
    """
    metric = metric or spec.gate.metric
    if minimum is None and metric == spec.gate.metric:
        minimum = spec.gate.min
    return metric, minimum, spec.gate.max_regression if max_regression is None else max_regression


def evaluate(
    settings: Settings,
    spec: DatasetSpec,
    data_ref: dict[str, Any],
    training: dict[str, Any],
    latency_budget_ms: float,
    metric: str | None = None,
) -> dict[str, Any]:
    """Score the challenger (loaded back from its logged artifact) and the champion on the same rows,
    with the task's metrics; ``metric`` is the gate's (default: the spec's).

    Returns :meth:`Evaluation.to_dict <include.evaluation.records.Evaluation.to_dict>` with
    ``champion_version`` (the champion's registered version, None without one).
    """
    from dataclasses import replace

    from include import registry, tracking
    from include.data.split import holdout_split
    from include.evaluation.evaluate import evaluate as score
    from include.evaluation.evaluate import log_evaluation
    from include.evaluation.records import Evaluation

    tracking.configure(settings)
    _, holdout = holdout_split(load_snapshot(settings, data_ref), spec)
    champion_version = registry.alias_version(settings.model_name, registry.CHAMPION)
    champion_uri = registry.model_uri(settings.model_name, champion_version) if champion_version else None
    evaluation = Evaluation.from_dict(
        score(
            training["model_uri"],
            champion_uri,
            holdout,
            spec,
            latency_budget_ms=latency_budget_ms,
            metric=metric or spec.gate.metric,
        )
    )
    result = replace(evaluation, champion_version=champion_version).to_dict()
    log_evaluation(training["run_id"], result)
    return result


def gate(
    settings: Settings,
    evaluation: dict[str, Any],
    training: dict[str, Any],
    minimum: float | None,
    max_regression: float,
    metric: str | None = None,
) -> dict[str, Any]:
    """Decide promotion (see :func:`gate_thresholds` for where the numbers come from); the decision
    and its numbers are tagged on the challenger's run, and the whole decision (every check with
    its value and threshold) logged there as :data:`GATE_DECISION_ARTIFACT`, so that a rejected
    challenger, which is never registered, keeps its numbers.

    ``evaluation`` is :func:`evaluate`'s result, read leniently
    (:meth:`~include.evaluation.records.Evaluation.from_partial`) so that a broken one is
    a rejection with its reason tagged, never an error. Returns the decision's ``to_dict()`` plus
    ``"tags"``, the tags set; MLflow's errors pass through.
    """
    import mlflow

    from include import tracking
    from include.evaluation.gate import decide
    from include.evaluation.records import Evaluation

    tracking.configure(settings)
    decision = decide(evaluation, minimum, max_regression, metric=metric)
    log.info("gate %s: %s\n%s", "PASSED" if decision.passed else "REJECTED", decision.reason, decision.table())
    # which champion the numbers were measured against: the deploy re-gates if it has changed since
    gated_against = Evaluation.from_partial(evaluation).champion_version
    tags = {**decision.as_tags(), GATED_AGAINST_TAG: str(gated_against or "none")}
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(training["run_id"], key, value)
    client.log_dict(training["run_id"], decision.to_dict(), GATE_DECISION_ARTIFACT)
    return {**decision.to_dict(), "tags": tags}


def register(
    settings: Settings,
    training: dict[str, Any],
    data_ref: dict[str, Any],
    validation: dict[str, Any],
    decision: dict[str, Any],
    run_context: dict[str, Any],
    spec: DatasetSpec | None = None,
) -> str:
    """Register the challenger with its lineage, point the ``challenger`` alias at it and log its
    model card (:mod:`include.reporting.model_card`; without ``spec`` its spec-based parts are unknown).

    Returns the registered version (a str); MLflow's errors pass through.
    """
    import mlflow

    from include import registry, tracking
    from include.data.versioning import DatasetRef
    from include.reporting.model_card import write_model_card
    from include.training.train import git_commit

    tracking.configure(settings)
    result_path = validation.get("result_path")
    if result_path and os.path.exists(result_path):
        mlflow.MlflowClient().log_artifact(training["run_id"], result_path, artifact_path="validation")
    tags = {
        **DatasetRef.from_dict(data_ref).to_tags(),
        "validation.success": validation["success"],
        "validation.expectations": f"{validation['successful']}/{validation['evaluated']}",
        "validation.result": result_path or "",
        "code.git_commit": git_commit(),
        "training.image": os.environ.get("MLOPS_TRAINING_IMAGE", "local-subprocess"),
        "training.device": training.get("device", "unknown"),
        "training.run_id": training["run_id"],
        **{f"airflow.{key}": value for key, value in run_context.items() if key != "params"},
        **{f"params.{key}": value for key, value in run_context.get("params", {}).items()},
        **{key: value for key, value in decision.get("tags", {}).items()},
    }
    version = registry.register_challenger(settings.model_name, training["model_uri"], training["run_id"], tags)
    log.info("registered %s version %s (alias %s)", settings.model_name, version, registry.CHALLENGER)
    write_model_card(settings, spec, version, decision)
    return version


# ---------------------------------------------------------------------- deploy
def smoke_sample(settings: Settings, spec: DatasetSpec, data_ref: dict[str, Any], version: str):
    """Held-out rows of ``data_ref``, typed by the one cast, and the registered ``version``'s
    output frame for them (every output column of the task)."""
    import mlflow

    from include import registry
    from include.data.split import holdout_split
    from include.training.model import as_model_input

    _, holdout = holdout_split(load_snapshot(settings, data_ref), spec)
    sample = as_model_input(holdout.head(SMOKE_TEST_ROWS), spec).reset_index(drop=True)
    model = mlflow.pyfunc.load_model(registry.model_uri(settings.model_name, version))
    return sample, model.predict(sample).reset_index(drop=True)


def deploy(
    settings: Settings, spec: DatasetSpec, data_ref: dict[str, Any], version: str, kubernetes_client=None
) -> dict[str, Any]:
    """Serve ``version``, smoke-test it with real requests, then make it the champion.

    The sample and the expected answers come from the held-out rows and the
    registered model itself, so a server that answers differently fails. Returns a dict with keys
    ``model_name``, ``version``, ``previous_champion`` and ``url``. Raises :class:`PromotionRefused` when
    the version's gate no longer holds against the current champion, ``TimeoutError`` when the promotion
    lock stays taken, and :class:`DeployFailed` when serving or the smoke test fails.
    """
    from include import registry, tracking
    from include.deployment import deployer_for
    from include.monitoring.profile import store_profile
    from include.reporting.model_card import refresh_model_card

    tracking.configure(settings)
    sample, expected = smoke_sample(settings, spec, data_ref, version)
    # Two runs that passed their gates at the same time take turns here; the second one
    # finds the first one's champion and must beat it too (see _confirm_gate).
    with registry.promotion_lock(settings, settings.model_name):
        _confirm_gate(settings, spec, data_ref, version)
        result = deployer_for(settings, kubernetes_client).deploy(settings.model_name, version, sample, expected)
    outcome = {
        "model_name": settings.model_name,
        "version": str(version),
        "previous_champion": result.previous_champion,
        "url": result.url,
        # the champion's drift reference, null distributions and CBPE calibration, then its model card
        "monitoring_profile": _after_promotion(
            "monitoring profile", "stored", lambda v: store_profile(settings, spec, v), str(version)
        ),
        "model_card": _after_promotion(
            "model card refresh", "refreshed", lambda v: refresh_model_card(settings, spec, v), str(version)
        ),
    }
    log.info("deployed: %s", json.dumps(outcome))
    return outcome


def _after_promotion(step: str, done: str, action, version: str) -> str:
    """Run ``action(version)``, a step that follows a promotion that has already happened (the version
    serves and is the champion); returns ``done`` or ``"failed: <error>"``, logged.

    A step that fails here must not undo the promotion: the first drift check builds a missing
    monitoring profile itself, and a model card can be refreshed later.
    """
    try:
        action(version)
    except Exception as exc:  # noqa: BLE001 - see the docstring: logged, reported, never undoes the promotion
        log.warning("%s of version %s failed: %s", step, version, exc)
        return f"failed: {type(exc).__name__}: {exc}"
    return done


def _confirm_gate(settings: Settings, spec: DatasetSpec, data_ref: dict[str, Any], version: str) -> None:
    """Refuse to promote ``version`` past a champion its gate never saw.

    The gate compared the challenger with the champion of that moment. If another run
    promoted a new champion since, the challenger is evaluated against that one on this
    run's held-out rows, with the thresholds its gate used, and must pass again; the
    outcome is tagged on the version (``promotion.*``). Runs under the promotion lock.
    """
    import math

    from include import registry
    from include.data.split import holdout_split
    from include.evaluation.evaluate import evaluate as score
    from include.evaluation.gate import decide

    name = settings.model_name
    champion = registry.alias_version(name, registry.CHAMPION)
    tags = registry.version_tags(name, version)
    gated_against = tags.get(GATED_AGAINST_TAG)
    if champion is None or champion == str(version) or gated_against == champion:
        return
    try:
        thresholds = {key: float(tags[f"gate.{key}"]) for key in ("max_regression", "latency_budget_ms")}
        # "none": the gate's bar was the no-skill baseline
        minimum = None if tags.get("gate.min", "none") == "none" else float(tags["gate.min"])
        metric = tags.get("gate.metric", "roc_auc")
    except (KeyError, ValueError):
        thresholds, minimum, metric = {}, None, None
    if (
        tags.get("gate.passed") != "true"
        or len(thresholds) < 2
        or not all(map(math.isfinite, thresholds.values()))
        or (minimum is not None and not math.isfinite(minimum))
    ):
        raise PromotionRefused(
            f"{name} version {version} carries no passed gate decision with its thresholds "
            f"(gate.* tags); it cannot replace champion version {champion}"
        )
    _, holdout = holdout_split(load_snapshot(settings, data_ref), spec)
    evaluation = score(
        registry.model_uri(name, version),
        registry.model_uri(name, champion),
        holdout,
        spec,
        latency_budget_ms=thresholds["latency_budget_ms"],
        metric=metric,
    )
    decision = decide(evaluation, minimum, thresholds["max_regression"], metric=metric)
    before = "no champion" if gated_against in (None, "none") else f"champion version {gated_against}"
    log.info(
        "the gate compared version %s with %s; the champion is now version %s: re-gated %s\n%s",
        version,
        before,
        champion,
        "PASSED" if decision.passed else "REJECTED",
        decision.table(),
    )
    registry.set_version_tags(
        name,
        version,
        {
            "promotion.regated_against": champion,
            "promotion.regate_passed": decision.passed,
            "promotion.regate_reason": decision.as_tags()["gate.reason"],
        },
    )
    if not decision.passed:
        raise PromotionRefused(
            f"{name} version {version} passed its gate against {before}, but version {champion} "
            f"became champion since; against it: {decision.reason}. Nothing was deployed; "
            f"version {champion} stays champion and served."
        )


def data_ref_of(settings: Settings, version: str) -> dict[str, Any]:
    """The dataset reference (a :meth:`DatasetRef.to_dict` dict) a registered version was trained on, from
    its lineage tags. Raises ``ValueError`` when those tags are missing or malformed.
    """
    from include import registry
    from include.data.versioning import DatasetRef, LineageError

    try:
        return DatasetRef.from_tags(registry.version_tags(settings.model_name, version)).to_dict()
    except LineageError as exc:
        raise ValueError(f"{settings.model_name} version {version} {exc}") from None


def rollback(
    settings: Settings,
    spec: DatasetSpec,
    target: str,
    actor: str,
    reason: str,
    airflow_run_id: str,
    kubernetes_client=None,
) -> dict[str, Any]:
    """Redeploy a registered version (a number, or "previous") and move the aliases, with an audit trail.

    Returns :func:`include.deployment.rollback.rollback`'s outcome dict. Raises :class:`RollbackRefused`
    for a target that cannot be rolled back to, ``ValueError`` for missing lineage, ``TimeoutError`` when the
    promotion lock stays taken, and the deployer's errors.
    """
    from include import registry, tracking
    from include.deployment import deployer_for
    from include.deployment.rollback import resolve_target
    from include.deployment.rollback import rollback as roll_back

    tracking.configure(settings)
    # a rollback is a promotion too: it takes its turn with the deploys
    with registry.promotion_lock(settings, settings.model_name):
        version = resolve_target(settings.model_name, target)
        sample, expected = smoke_sample(settings, spec, data_ref_of(settings, version), version)
        outcome = roll_back(
            settings,
            deployer_for(settings, kubernetes_client),
            settings.model_name,
            version,
            sample,
            expected,
            actor=actor,
            reason=reason,
            airflow_run_id=airflow_run_id,
        )
    log.info("rolled back: %s", json.dumps(outcome))
    return outcome
