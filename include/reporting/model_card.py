"""The model card of a registered version: what it is for, what it learned from, how it scored, what limits it.

One card per version, in JSON (``model_card/model_card.json``, shaped by
``model_card.schema.json`` beside this module) and in Markdown
(``model_card/model_card.md``, :mod:`include.reporting.model_card_markdown`), logged as
artifacts of the version's MLflow run. The register step writes it; it is refreshed when
the version becomes champion, since its drift history only starts then. Sections:

- ``model``: name, version, run, model type, code commit, training image, Airflow run;
- ``intended_use``: the dataset spec's ``description``, task, target and features;
- ``training_data``: the DVC data version (repo, path, md5, rev), rows and time window,
  and the validation result, all read from the version's lineage tags;
- ``evaluation``: the gate metric and every other metric, overall and per slice, with latency;
- ``gate``: the decision, its numbers (read from the version's ``gate.*`` tags) and each check
  against its threshold;
- ``feature_importance``: permutation importance on the held-out rows
  (:mod:`include.reporting.importance`);
- ``limits``: the drift windows, judged while this version was champion, whose drift share or
  performance drop crossed its threshold, and the slices where the gate metric is undefined.

Nothing is guessed: a value the stores do not hold is the string ``"unknown"``; ``"none"``
means the thing does not exist (no bar set, no champion to compare with, a check that is
reported and not gated).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

from include.util.fields import finite_or_none

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
NONE = "none"
SCHEMA_VERSION = 1
CARD_FOLDER = "model_card"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"
SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")
# the version tag naming the card's Markdown artifact in the version's run
CARD_TAG = "model_card"
GATE_NUMBER_TAGS = {
    "minimum": "gate.min",
    "baseline": "gate.baseline",
    "max_regression": "gate.max_regression",
    "challenger_score": "gate.challenger_score",
    "champion_score": "gate.champion_score",
    "latency_p95_ms": "gate.latency_p95_ms",
    "latency_budget_ms": "gate.latency_budget_ms",
}


# ---------------------------------------------------------------------- values
def _number(value: Any, absent: str = UNKNOWN) -> float | str:
    """A finite number as a float; None as ``absent``; anything else (NaN, text) as unknown."""
    if value is None:
        return absent
    number = finite_or_none(value)
    return UNKNOWN if number is None else number


def _tag_number(tags: Mapping[str, str], key: str) -> float | str:
    """A numeric tag: the number, ``"none"`` where the tag says none, ``"unknown"`` where it is missing."""
    value = tags.get(key)
    if value is None or value == "":
        return UNKNOWN
    return NONE if value == NONE else _number(value)


def _tag_flag(tags: Mapping[str, str], key: str) -> bool | str:
    value = str(tags.get(key, "")).lower()
    return {"true": True, "false": False}.get(value, UNKNOWN)


def _text(value: Any) -> str:
    return str(value).strip() if value is not None and str(value).strip() else UNKNOWN


def _integer(value: Any) -> int | str:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return UNKNOWN


def _scores(scores: Any) -> dict[str, Any]:
    """A score dict with each undefined or unusable metric as unknown (multiclass recall stays a dict)."""
    if not isinstance(scores, Mapping):
        return {}
    result: dict[str, Any] = {}
    for name, value in scores.items():
        if isinstance(value, Mapping):
            result[str(name)] = {str(label): _number(number) for label, number in value.items()}
        elif name == "rows":
            result[str(name)] = _integer(value)
        else:
            result[str(name)] = _number(value)
    return result


# ---------------------------------------------------------------------- sections
def _model_section(model: Mapping[str, Any], tags: Mapping[str, str], run_tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": _text(model.get("name")),
        "version": _text(model.get("version")),
        "run_id": _text(model.get("run_id")),
        "model_uri": _text(model.get("model_uri")),
        "registered_at": _text(model.get("registered_at")),
        "model_type": _text(run_tags.get("model_type")),
        "code_git_commit": _text(tags.get("code.git_commit") or run_tags.get("code.git_commit")),
        "training_image": _text(tags.get("training.image")),
        "training_device": _text(tags.get("training.device") or run_tags.get("device")),
        "airflow_dag_id": _text(tags.get("airflow.dag_id")),
        "airflow_run_id": _text(tags.get("airflow.run_id")),
    }


def _intended_use(spec: DatasetSpec | None) -> dict[str, Any]:
    if spec is None:
        keys = ("description", "dataset", "task", "target", "positive_class", "classes", "slice_feature", "features")
        return dict.fromkeys(keys, UNKNOWN)
    return {
        "description": " ".join(spec.description.split()) or UNKNOWN,
        "dataset": spec.name,
        "task": spec.task,
        "target": spec.target,
        "positive_class": spec.positive_class if spec.task == "binary" else NONE,
        "classes": list(spec.classes),
        "slice_feature": spec.slice_feature or NONE,
        "features": [{"name": feature.name, "type": feature.type} for feature in spec.features],
    }


def _training_data(tags: Mapping[str, str], spec: DatasetSpec | None) -> dict[str, Any]:
    start, separator, end = str(tags.get("data.window", "")).partition("..")
    return {
        "dataset": spec.name if spec is not None else UNKNOWN,
        "repo": _text(tags.get("data.repo")),
        "path": _text(tags.get("data.path")),
        "md5": _text(tags.get("data.md5")),
        "rev": _text(tags.get("data.rev")),
        "rows": _integer(tags.get("data.rows")),
        "window_start": _text(start) if separator else UNKNOWN,
        "window_end": _text(end) if separator else UNKNOWN,
        "validation": {
            "success": _tag_flag(tags, "validation.success"),
            "expectations": _text(tags.get("validation.expectations")),
        },
    }


def _evaluation(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | str:
    if not isinstance(evaluation, Mapping) or not isinstance(evaluation.get("challenger"), Mapping):
        return UNKNOWN
    challenger = evaluation["challenger"]
    latency = challenger.get("latency_ms") if isinstance(challenger.get("latency_ms"), Mapping) else {}
    champion = evaluation.get("champion")
    slices = challenger.get("slices") if isinstance(challenger.get("slices"), Mapping) else {}
    return {
        "metric": _text(evaluation.get("metric")),
        "higher_is_better": evaluation.get("higher_is_better")
        if isinstance(evaluation.get("higher_is_better"), bool)
        else UNKNOWN,
        "holdout_rows": _integer(evaluation.get("holdout_rows")),
        "baseline": _number(evaluation.get("baseline")),
        "slice_feature": _text(evaluation.get("slice_feature") or NONE),
        "overall": _scores(challenger.get("overall")),
        "slices": {str(value): _scores(scores) for value, scores in slices.items()},
        "latency": {
            "p50_ms": _number(latency.get("p50")),
            "p95_ms": _number(latency.get("p95")),
            "budget_ms": _number(challenger.get("latency_budget_ms")),
            "method": _text(latency.get("method")),
        },
        "champion": NONE
        if champion is None and "champion" in evaluation
        else {
            "version": _text(evaluation.get("champion_version")),
            "overall": _scores(champion.get("overall")) if isinstance(champion, Mapping) else {},
        },
    }


def _checks(decision: Mapping[str, Any] | None, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each check against its threshold: from the decision, else its pass/fail from the tags (numbers unknown)."""
    checks = decision.get("checks") if isinstance(decision, Mapping) else None
    if isinstance(checks, list) and checks:
        return [
            {
                "name": _text(check.get("name")),
                "value": _number(check.get("value")),
                # a check that passed without a threshold is reported, not gated
                "threshold": _number(check.get("threshold"), NONE if check.get("passed") is True else UNKNOWN),
                "passed": check.get("passed") if isinstance(check.get("passed"), bool) else UNKNOWN,
                "detail": _text(check.get("detail")),
            }
            for check in checks
            if isinstance(check, Mapping)
        ]
    return [
        {
            "name": key.removeprefix("gate.check."),
            "value": UNKNOWN,
            "threshold": UNKNOWN,
            "passed": {"pass": True, "fail": False}.get(value, UNKNOWN),
            "detail": UNKNOWN,
        }
        for key, value in sorted(tags.items())
        if key.startswith("gate.check.")
    ]


def _gate(tags: Mapping[str, str], decision: Mapping[str, Any] | None) -> dict[str, Any]:
    numbers = {name: _tag_number(tags, key) for name, key in GATE_NUMBER_TAGS.items()}
    return {
        "passed": _tag_flag(tags, "gate.passed"),
        "first_model": _tag_flag(tags, "gate.first_model"),
        "metric": _text(tags.get("gate.metric")),
        **numbers,
        "compared_with_champion_version": _text(tags.get("gate.champion_version")),
        "reason": _text(tags.get("gate.reason")),
        "checks": _checks(decision, tags),
    }


def _importance(importance: Mapping[str, Any] | None, reason: str | None) -> dict[str, Any]:
    if not isinstance(importance, Mapping):
        return {"status": UNKNOWN, "reason": reason or "not computed"}
    return {
        "status": "computed",
        **{key: importance[key] for key in ("method", "scorer", "higher_is_better", "n_repeats", "random_state")},
        "rows": _integer(importance.get("rows")),
        "baseline_score": _number(importance.get("baseline_score")),
        "features": [
            {
                "feature": str(row["feature"]),
                "importance_mean": _number(row.get("importance_mean")),
                "importance_std": _number(row.get("importance_std")),
            }
            for row in importance.get("features", [])
        ],
    }


def _limits(drift: Mapping[str, Any] | None, evaluation: dict[str, Any] | str) -> dict[str, Any]:
    from include.reporting.drift_history import summary

    notes = []
    if isinstance(evaluation, dict):
        metric = evaluation["metric"]
        for value, scores in evaluation["slices"].items():
            if scores.get(metric, UNKNOWN) == UNKNOWN:
                rows = scores.get("rows", UNKNOWN)
                notes.append(
                    f"{metric} is undefined on slice {evaluation['slice_feature']}={value} ({rows} held-out rows)"
                )
    drift_section = dict(drift) if isinstance(drift, Mapping) else {"status": UNKNOWN, "reason": "not read"}
    drift_section["summary"] = summary(drift_section)
    return {"drift": drift_section, "evaluation_notes": notes}


def build_card(
    *,
    model: Mapping[str, Any],
    tags: Mapping[str, str],
    run_tags: Mapping[str, str] | None = None,
    spec: DatasetSpec | None = None,
    evaluation: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
    importance: Mapping[str, Any] | None = None,
    importance_reason: str | None = None,
    drift: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as a JSON-ready dict (see the module docstring and ``model_card.schema.json``).

    ``model``: ``name``, ``version``, ``run_id``, ``model_uri``, ``registered_at``; ``tags``: the
    version's tags (lineage and ``gate.*``); ``run_tags``: its run's tags; ``evaluation``: the
    ``evaluation.json`` the evaluate step logged; ``decision``: the gate's ``to_dict()``;
    ``importance``: :func:`~include.reporting.importance.permutation_feature_importance`'s
    result (or None, with ``importance_reason`` saying why); ``drift``:
    :func:`~include.reporting.drift_history.drift_history`'s result. Anything absent is unknown.
    """
    evaluation_section = _evaluation(evaluation)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": _model_section(model, tags, run_tags or {}),
        "intended_use": _intended_use(spec),
        "training_data": _training_data(tags, spec),
        "evaluation": evaluation_section,
        "gate": _gate(tags, decision),
        "feature_importance": _importance(importance, importance_reason),
        "limits": _limits(drift, evaluation_section),
    }


# ---------------------------------------------------------------------- stores
def _load_json_artifact(run_id: str, path: str) -> dict[str, Any] | None:
    """A JSON artifact of a run, or None when it is not there (logged as a warning)."""
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except Exception as exc:  # noqa: BLE001 - absent or unreadable: the card says unknown
        log.warning("run %s has no readable %s: %s", run_id, path, exc)
        return None


def _holdout_importance(spec: DatasetSpec, tags: Mapping[str, str], model_uri: str, metric: str):
    """(importance, None) on the version's own held-out rows, or (None, why not)."""
    import mlflow

    from include.data.split import holdout_split
    from include.data.versioning import DatasetRef, load
    from include.reporting.importance import permutation_feature_importance

    try:
        _, holdout = holdout_split(load(DatasetRef.from_tags(tags)), spec)
        model = mlflow.pyfunc.load_model(model_uri)
        return permutation_feature_importance(model, holdout, spec, metric), None
    except Exception as exc:  # noqa: BLE001 - the card says unknown and why; registration stands
        log.warning("permutation importance of %s not computed: %s", model_uri, exc)
        return None, f"not computed: {type(exc).__name__}: {exc}"


def _log_card(client, run_id: str, card: dict[str, Any]) -> None:
    from include.reporting.model_card_markdown import render_markdown

    client.log_text(run_id, json.dumps(card, indent=2, allow_nan=False), f"{CARD_FOLDER}/{CARD_JSON}")
    client.log_text(run_id, render_markdown(card), f"{CARD_FOLDER}/{CARD_MARKDOWN}")


def write_model_card(
    settings: Settings, spec: DatasetSpec | None, version: str, decision: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build the card of registered ``version`` from the stores and log it to the version's run.

    Reads the version and its run, the run's ``evaluation.json``, the snapshot named by the
    lineage tags (for the permutation importance) and the drift history. A piece that cannot be
    read is unknown in the card; MLflow's errors in reading the version or logging the card pass
    through (a retry writes the same card). Tags the version ``model_card`` with the Markdown's
    artifact path. Returns the card.
    """
    import mlflow

    from include import registry
    from include.reporting.drift_history import drift_history

    client = mlflow.MlflowClient()
    name = settings.model_name
    model_version = client.get_model_version(name, version)
    run_id = str(model_version.run_id)
    tags = dict(model_version.tags)
    run = client.get_run(run_id)
    model_uri = registry.model_uri(name, version)
    metric = tags.get("gate.metric") or (spec.gate.metric if spec is not None else None)
    if spec is None:
        importance, reason = None, "not computed: no dataset spec was given"
    elif not metric:
        importance, reason = None, "not computed: the gate metric is unknown"
    else:
        importance, reason = _holdout_importance(spec, tags, model_uri, metric)
    created = getattr(model_version, "creation_timestamp", None)
    card = build_card(
        model={
            "name": name,
            "version": str(version),
            "run_id": run_id,
            "model_uri": model_uri,
            "registered_at": datetime.fromtimestamp(created / 1000, UTC).isoformat() if created else None,
        },
        tags=tags,
        run_tags=dict(run.data.tags),
        spec=spec,
        evaluation=_load_json_artifact(run_id, "evaluation.json"),
        decision=decision,
        importance=importance,
        importance_reason=reason,
        drift=drift_history(client, name, str(version)),
    )
    _log_card(client, run_id, card)
    registry.set_version_tags(name, version, {CARD_TAG: f"{CARD_FOLDER}/{CARD_MARKDOWN}"})
    return card


def refresh_model_card(settings: Settings, spec: DatasetSpec | None, version: str) -> dict[str, Any]:
    """Bring the card of ``version`` up to date with its drift history (e.g. when it becomes champion).

    The rest of a card already logged is kept as it is (the importance is not recomputed); a
    version without a card of its own in its run gets one written by :func:`write_model_card`.
    Returns the card.
    """
    import mlflow

    from include.reporting.drift_history import drift_history

    client = mlflow.MlflowClient()
    run_id = str(client.get_model_version(settings.model_name, version).run_id)
    card = _load_json_artifact(run_id, f"{CARD_FOLDER}/{CARD_JSON}")
    # a run registered twice holds the card of the version written last
    written_for = card.get("model", {}).get("version") if isinstance(card, dict) else None
    if written_for != str(version) or not isinstance(card.get("limits"), dict):
        return write_model_card(settings, spec, version)
    drift = drift_history(client, settings.model_name, str(version))
    card["limits"] = _limits(drift, card.get("evaluation", UNKNOWN))
    _log_card(client, run_id, card)
    return card
