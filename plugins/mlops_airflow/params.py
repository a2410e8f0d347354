"""The DAGs' params: JSON schemas, shown as each DAG's trigger form and enforced on every trigger.

A form field is a default, a JSON schema type with its bounds, and the section, title and
description the form shows; the helpers below build one ``Param`` from those, so each
field reads as one call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk import Param

# include.training's __init__ holds only constants, so parsing a DAG file stays cheap
from include.training import MODEL_TYPES

# every metric a spec's gate may name (include.data.spec.HIGHER_IS_BETTER), kept here so that
# parsing a DAG file does not import the spec module
GATE_METRICS = ["roc_auc", "pr_auc", "log_loss", "macro_f1", "rmse", "mae", "r2"]
# the deploy's rollout modes (include.data.rollout_spec.MODES) and "spec": the dataset spec's own
ROLLOUT_CHOICES = ["spec", "direct", "shadow", "canary"]
FORCE_CHOICES = ["none", "promote", "rollback"]


def training_params() -> dict[str, Param]:
    """The ``ml_training`` form, by param name: model, resources, data window, gate and run."""
    return {
        "model_type": _choice(
            "torch_mlp",
            MODEL_TYPES,
            "Model",
            "Model type",
            "torch_mlp: a PyTorch MLP (uses CUDA when present, the CPU otherwise). "
            "sklearn_hgb: scikit-learn HistGradientBoosting (classifier or regressor, by the dataset's task).",
            values_display={"torch_mlp": "PyTorch MLP", "sklearn_hgb": "scikit-learn gradient boosting"},
        ),
        "epochs": _integer(10, 1, 500, "Model", None, "Passes over the training data (boosting rounds scale with it)."),
        "learning_rate": _optional(
            "number",
            "Model",
            "Learning rate",
            "Optimizer step size. Empty: 0.001 for torch_mlp, 0.1 for sklearn_hgb.",
            exclusiveMinimum=0,
            maximum=1,
        ),
        "batch_size": _integer(256, 8, 65536, "Model", "Batch size", "Rows per optimizer step (torch_mlp)."),
        "gpus": _integer(
            1,
            0,
            8,
            "Resources",
            None,
            "GPUs requested by the training pod (kubernetes profile). The local profile uses a GPU when one is present.",
        ),
        "training_window_days": _integer(
            28, 1, 3660, "Data", "Training window (days)", "Number of daily partitions the model learns from."
        ),
        "training_window_end": _optional(
            "string",
            "Data",
            "Training window end",
            "Last day included (YYYY-MM-DD). Empty: the day before the run.",
            format="date",
        ),
        "gate_metric": _optional(
            "string",
            "Gate",
            "Gate metric",
            "The metric the gate reads. Empty: the dataset spec's gate.metric "
            "(binary roc_auc, multiclass macro_f1, regression rmse by default).",
            enum=[None, *GATE_METRICS],
        ),
        "gate_min": _optional(
            "number",
            "Gate",
            "Gate bar",
            "The bar the challenger must reach on the gate metric: a floor "
            "(roc_auc, pr_auc, macro_f1, r2) or a ceiling (rmse, mae, log_loss). "
            "Empty: the spec's gate.min, or beating the no-skill baseline.",
        ),
        "max_regression": _optional(
            "number",
            "Gate",
            "Maximum regression",
            "Largest loss on the gate metric tolerated against the champion, "
            "overall and on every slice, in the metric's units. "
            "Empty: the spec's gate.max_regression.",
            minimum=0,
        ),
        "latency_budget_ms": _field(
            50,
            "number",
            "Gate",
            "Latency budget (ms)",
            "p95 time the challenger may take to answer one request.",
            exclusiveMinimum=0,
            maximum=10000,
        ),
        "rollout": _choice(
            "spec",
            ROLLOUT_CHOICES,
            "Deploy",
            "Rollout",
            "How the gated version reaches traffic. direct: served alone and made champion at once. "
            "shadow: the champion answers, the candidate's predictions are logged. canary: a sticky share "
            "of rows is answered by the candidate. shadow and canary are decided by ml_rollout from live "
            "labels. spec: the dataset spec's rollout.mode (also what a drift-triggered retraining uses).",
        ),
        "canary_share": _optional(
            "number",
            "Deploy",
            "First canary share",
            "Share of rows the candidate answers at the canary's first step. Empty: the spec's first "
            "rollout.canary_steps value.",
            exclusiveMinimum=0,
            maximum=1,
        ),
        "reason": reason_param("manual", "Why this run was started; recorded on the model version."),
        "drift": _optional(
            "object",
            "Run",
            "Drift evidence",
            "Set by drift_monitor when it triggers a retraining: the window and the drift numbers that warranted it.",
        ),
    }


def drift_params() -> dict[str, Param]:
    """The ``drift_monitor`` form, by param name: the retraining thresholds and the guards around them."""
    return {
        "drift_share_threshold": _share(
            0.3,
            "Drift share threshold",
            "Retrain when at least this share of the feature columns drifted against the champion's training data.",
        ),
        "performance_drop_threshold": _share(
            0.05,
            "Performance drop threshold",
            "Retrain when the task's metric (the spec's gate.metric) on the "
            "window's labelled requests is this much worse than on the "
            "champion's held-out rows, in the metric's units.",
        ),
        "estimated_drop_threshold": _optional(
            "number",
            "Thresholds",
            "Estimated ROC AUC drop threshold",
            "Binary models: retrain when the ROC AUC estimated from the champion's calibrated "
            "probabilities (CBPE, before any label arrives) is this much below its held-out ROC AUC. "
            "Empty: the estimate is reported but never retrains.",
            exclusiveMinimum=0,
            maximum=1,
        ),
        "window_days": _integer(
            1,
            1,
            90,
            "Guards",
            "Window (days)",
            "Days of traffic each check compares, ending with the run's own day: "
            "a low-traffic model (a few rows a day) needs several.",
        ),
        "min_rows": _integer(
            200,
            1,
            None,
            "Guards",
            "Minimum rows",
            "A window with fewer served requests is skipped as insufficient data.",
        ),
        "cooldown_days": _integer(
            7,
            0,
            90,
            "Guards",
            "Cooldown (days of data)",
            "No second retraining from a window within this many days of the window that last triggered one.",
        ),
        "allow_backfill_retrain": _field(
            False, "boolean", "Guards", "Retrain from backfills", "Backfill runs only report drift unless this is set."
        ),
    }


def rollback_params() -> dict[str, Param]:
    """The ``ml_rollback`` form, by param name: the version to serve and why."""
    return {
        "target": _field(
            "previous",
            "string",
            "Rollback",
            "Version to serve",
            'A registered version number, or "previous" for the previous champion.',
            pattern=r"^(previous|[1-9][0-9]*)$",
        ),
        "reason": reason_param("rollback", "Why; recorded on both model versions.", section="Rollback"),
    }


def rollout_control_params() -> dict[str, Param]:
    """The ``ml_rollout`` form, by param name: an operator's forced decision and why."""
    return {
        "force": _choice(
            "none",
            FORCE_CHOICES,
            "Rollout",
            "Force a decision",
            "none: decide from the live rows and guardrails. promote: make the candidate champion now "
            "(served alone and smoke-tested first). rollback: stop the rollout; the champion answers alone.",
        ),
        "reason": reason_param("scheduled check", "Why; recorded on the candidate with a forced decision.", "Rollout"),
    }


def reason_param(default: str, description: str, section: str = "Run") -> Param:
    """The ``reason`` a run records on the model version(s): 1 to 500 characters of text, a ``Param``."""
    return _field(default, "string", section, None, description, minLength=1, maxLength=500)


def _integer(
    default: int, minimum: int, maximum: int | None, section: str, title: str | None, description: str
) -> Param:
    """A whole number in ``minimum..maximum`` (no upper bound when ``maximum`` is None)."""
    bounds = {"minimum": minimum} if maximum is None else {"minimum": minimum, "maximum": maximum}
    return _field(default, "integer", section, title, description, **bounds)


def _choice(default: str, choices: Iterable[str], section: str, title: str, description: str, **schema: Any) -> Param:
    """One of ``choices`` (text), offered as a list; ``schema`` may add ``values_display``."""
    return _field(default, "string", section, title, description, enum=list(choices), **schema)


def _share(default: float, title: str, description: str) -> Param:
    """A number in (0, 1] in the thresholds section (a share of columns, a metric's drop): 0 would
    retrain on every window, so the form refuses it."""
    return _field(default, "number", "Thresholds", title, description, exclusiveMinimum=0, maximum=1)


def _optional(json_type: str, section: str, title: str, description: str, **schema: Any) -> Param:
    """A field that may be left empty: default None, JSON schema type ``json_type`` or null."""
    return _field(None, ["null", json_type], section, title, description, **schema)


def _field(
    default: Any, json_type: str | list[str], section: str, title: str | None, description: str, **schema: Any
) -> Param:
    """One form field: ``default``, of JSON schema type ``json_type`` with the keywords in ``schema``,
    shown in ``section`` under ``title`` (None: the param's name) with ``description``."""
    labels = {"section": section} if title is None else {"section": section, "title": title}
    return Param(default, type=json_type, **schema, **labels, description=description)
