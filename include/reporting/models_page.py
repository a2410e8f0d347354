"""What the Models page shows, as one JSON document built from MLflow and the drift report store.

Sections (:func:`models_page`):

- ``timeline``: every period a version was champion, oldest first, with how it got there
  (``gate``, ``approval``, ``rollout``, ``rollback``), by whom, why, and the Airflow run that did
  it. MLflow keeps no alias history, so each version records its own periods
  (:func:`include.registry.champion_history`); a champion promoted before that record existed
  shows one period of unknown start.
- ``versions``: each registered version (newest first) with its aliases, gate decision (every
  check against its threshold, overall and per slice), lineage, approval, rollback and rollout
  tags, and its model card (:mod:`include.reporting.model_card`).
- ``rejections``: challengers the gate rejected. They are never registered, so they are read
  from the training runs' ``gate.*`` tags and their ``gate/decision.json``.
- ``drift``: drift per day (:mod:`include.reporting.drift_days`).
- ``rollout``: the rollout in progress (alias ``candidate`` and its ``rollout.*`` tags), or None.

Nothing here imports Airflow; links to Airflow runs are paths of its UI (``/dags/<dag_id>/runs/<run_id>``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from include.reporting.drift_history import UNKNOWN

if TYPE_CHECKING:
    from include.settings import Settings

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
# the newest versions and rejections shown: the page stays small whatever the history
MAX_VERSIONS = 50
MAX_REJECTIONS = 50
LINEAGE_TAGS = {
    "data_repo": "data.repo",
    "data_path": "data.path",
    "data_md5": "data.md5",
    "data_rev": "data.rev",
    "data_rows": "data.rows",
    "data_window": "data.window",
    "validation_success": "validation.success",
    "validation_expectations": "validation.expectations",
    "validation_result": "validation.result",
    "code_git_commit": "code.git_commit",
    "training_image": "training.image",
    "training_device": "training.device",
    "training_run_id": "training.run_id",
}
ROLLOUT_FIELDS = (
    "mode",
    "state",
    "started_at",
    "champion_version",
    "canary_share",
    "decision",
    "reason",
    "decided_at",
    "airflow_run_id",
    "ended_at",
)


def airflow_run_path(dag_id: str | None, run_id: str | None) -> str | None:
    """The Airflow UI path of a DAG run (``/dags/<dag_id>/runs/<run_id>``, quoted), None when either is unknown."""
    if not dag_id or not run_id or UNKNOWN in (dag_id, run_id):
        return None
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None


def _iso(millis: Any) -> str | None:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds") if millis else None


def _prefixed(tags: Mapping[str, str], prefix: str) -> dict[str, str] | None:
    found = {key.removeprefix(prefix): value for key, value in tags.items() if key.startswith(prefix)}
    return found or None


def gate_section(tags: Mapping[str, str], decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """A gate decision for the page: from the whole decision when there is one, else from the tags.

    ``decision`` is :meth:`GateDecision.to_dict <include.evaluation.gate.GateDecision.to_dict>` (or the
    model card's ``gate`` section); ``tags`` the ``gate.*`` tags. Returns ``{"passed": bool | None,
    "reason", "metric", "minimum", "max_regression", "challenger_score", "champion_score",
    "latency_p95_ms", "latency_budget_ms", "compared_with": str | None, "checks": [{"name", "scope"
    ("overall" | "slice" | "latency"...), "value", "threshold", "passed", "detail"}]}``; a check
    known only from its tag has None for value, threshold and detail.
    """
    passed = {"true": True, "false": False}.get(str(tags.get("gate.passed", "")).lower())
    raw = decision.get("checks") if isinstance(decision, Mapping) else None
    if isinstance(raw, list) and raw:
        checks = [
            {
                "name": str(check.get("name")),
                "value": _number(check.get("value")),
                "threshold": _number(check.get("threshold")),
                "passed": check.get("passed") if isinstance(check.get("passed"), bool) else None,
                "detail": check.get("detail"),
            }
            for check in raw
            if isinstance(check, Mapping)
        ]
    else:
        checks = [
            {
                "name": key.removeprefix("gate.check."),
                "value": None,
                "threshold": None,
                "passed": {"pass": True, "fail": False}.get(value),
                "detail": None,
            }
            for key, value in sorted(tags.items())
            if key.startswith("gate.check.")
        ]
    for check in checks:
        name = check["name"]
        check["scope"] = "slice" if name.startswith("slice") else "overall" if name != "latency" else "latency"
    numbers = {
        name: _number(tags.get(f"gate.{key}"))
        for name, key in (
            ("minimum", "min"),
            ("max_regression", "max_regression"),
            ("challenger_score", "challenger_score"),
            ("champion_score", "champion_score"),
            ("latency_p95_ms", "latency_p95_ms"),
            ("latency_budget_ms", "latency_budget_ms"),
        )
    }
    compared = tags.get("gate.champion_version")
    return {
        "passed": passed,
        "reason": tags.get("gate.reason"),
        "metric": tags.get("gate.metric"),
        **numbers,
        "compared_with": None if compared in (None, "none") else compared,
        "checks": checks,
    }


def _number(value: Any) -> float | None:
    from include.util.fields import finite_or_none

    return None if value in (None, "none", UNKNOWN) else finite_or_none(value)


def _load_json_artifact(client, run_id: str, path: str) -> dict[str, Any] | None:
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except Exception:  # noqa: BLE001 - absent or unreadable: the page shows what the tags hold
        return None


def _version(client, version, aliases: list[str], link: Callable) -> dict[str, Any]:
    from include.registry import champion_history
    from include.reporting.model_card import CARD_FOLDER, CARD_JSON

    tags = dict(version.tags)
    run_id = str(version.run_id) if version.run_id else None
    card = _load_json_artifact(client, run_id, f"{CARD_FOLDER}/{CARD_JSON}") if run_id else None
    card_gate = card.get("gate") if isinstance(card, dict) else None
    dag_id, airflow_run = tags.get("airflow.dag_id"), tags.get("airflow.run_id")
    rollout = _prefixed(tags, "rollout.")
    return {
        "version": str(version.version),
        "registered_at": _iso(version.creation_timestamp),
        "run_id": run_id,
        "aliases": aliases,
        "airflow": {"dag_id": dag_id, "run_id": airflow_run, "url": link(airflow_run_path(dag_id, airflow_run))},
        "gate": gate_section(tags, card_gate),
        "lineage": {name: tags.get(key) for name, key in LINEAGE_TAGS.items()},
        "approval": _prefixed(tags, "approval."),
        "rollback": _prefixed(tags, "rollback."),
        "rollout": rollout,
        "last_challenge": tags.get("rollout.last_challenge"),
        "history": champion_history(tags),
        "model_card": card,
    }


def _timeline(versions: list[dict[str, Any]], champion: str | None, link: Callable) -> list[dict[str, Any]]:
    periods = []
    for entry in versions:
        for period in entry["history"]:
            periods.append({"version": entry["version"], **period})
    periods.sort(key=lambda period: str(period["from"]))
    for index, period in enumerate(periods):
        # a period left open by a move that failed half-way ends where the next one starts
        if period.get("to") is None and (period["version"] != champion or index < len(periods) - 1):
            later = periods[index + 1]["from"] if index < len(periods) - 1 else None
            period["to"] = later
            period["inferred_end"] = True
        period["url"] = link(airflow_run_path(period.get("dag_id"), period.get("run_id")))
    if champion is not None and not any(p["version"] == champion and p.get("to") is None for p in periods):
        periods.append(
            {
                "version": champion,
                "from": None,
                "to": None,
                "how": UNKNOWN,
                "by": UNKNOWN,
                "reason": "promoted before champion periods were recorded",
                "dag_id": UNKNOWN,
                "run_id": UNKNOWN,
                "url": None,
            }
        )
    return periods


def _rejections(client, link: Callable) -> list[dict[str, Any]]:
    from include.pipeline import GATE_DECISION_ARTIFACT
    from include.tracking import TRAINING_EXPERIMENT

    experiment = client.get_experiment_by_name(TRAINING_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`gate.passed` = 'false'",
        max_results=MAX_REJECTIONS,
        order_by=["attributes.start_time DESC"],
    )
    rejected = []
    for run in runs:
        tags = run.data.tags
        dag_id, airflow_run = tags.get("airflow.dag_id"), tags.get("airflow.run_id")
        decision = _load_json_artifact(client, run.info.run_id, GATE_DECISION_ARTIFACT)
        rejected.append(
            {
                "run_id": run.info.run_id,
                "started_at": _iso(run.info.start_time),
                "model_type": tags.get("model_type"),
                "reason": tags.get("reason"),
                "airflow": {
                    "dag_id": dag_id,
                    "run_id": airflow_run,
                    "url": link(airflow_run_path(dag_id, airflow_run)),
                },
                "failed_checks": tags.get("gate.failed_checks"),
                "gate": gate_section(tags, decision),
            }
        )
    return rejected


def _rollout(client, model_name: str) -> dict[str, Any] | None:
    from include.registry import alias_version

    candidate = alias_version(model_name, CANDIDATE)
    if candidate is None:
        return None
    tags = dict(client.get_model_version(model_name, candidate).tags)
    rollout: dict[str, Any] = {"candidate_version": candidate}
    rollout.update({name: tags.get(f"rollout.{name}") for name in ROLLOUT_FIELDS})
    rollout["steps"] = _json(tags.get("rollout.steps"))
    rollout["numbers"] = _json(tags.get("rollout.numbers"))
    return rollout


def models_page(
    settings: Settings,
    *,
    ui_base_url: str = "",
    report_url: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The Models page's document for ``settings.model_name``: a JSON-ready dict.

    ``ui_base_url`` is put before the Airflow UI paths of runs (``""``: paths of this server);
    ``report_url(day)`` gives the link to a day's drift report (None: no links). Returns
    ``{"model_name", "generated_at", "champion", "previous_champion", "candidate",
    "timeline", "versions", "rejections", "drift", "rollout", "notes"}`` (see the module
    docstring; ``notes`` lists what could not be read). A model that is not registered yet gives
    empty sections. MLflow's errors in reading the registry pass through.
    """
    import mlflow

    from include import tracking
    from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version
    from include.reporting.drift_days import drift_days

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    name = settings.model_name

    def link(path: str | None) -> str | None:
        return None if path is None else f"{ui_base_url.rstrip('/')}{path}"

    found = client.search_model_versions(f"name='{name}'", max_results=1000)
    found = sorted(found, key=lambda v: int(v.version), reverse=True)[:MAX_VERSIONS]
    aliases: dict[str, list[str]] = {}
    if found:
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
    champion = alias_version(name, CHAMPION)
    versions = [_version(client, v, sorted(aliases.get(str(v.version), [])), link) for v in found]
    notes = []
    try:
        rejections = _rejections(client, link)
    except Exception as exc:  # noqa: BLE001 - one unreadable section must not hide the others
        rejections = []
        notes.append(f"rejections unknown: the training runs could not be read: {exc}")
    try:
        rollout = _rollout(client, name)
    except Exception as exc:  # noqa: BLE001 - the same: the page shows the rest
        rollout = None
        notes.append(f"rollout unknown: the candidate could not be read: {exc}")
    drift = drift_days(settings, client, report_url)
    if drift["status"] != "known":
        notes.append(f"drift unknown: {drift['reason']}")
    return {
        "model_name": name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "champion": champion,
        "previous_champion": alias_version(name, PREVIOUS_CHAMPION),
        "candidate": None if rollout is None else rollout["candidate_version"],
        "timeline": _timeline(versions, champion, link),
        "versions": versions,
        "rejections": rejections,
        "drift": drift,
        "rollout": rollout,
        "notes": notes,
    }
