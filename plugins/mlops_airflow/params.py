"""The ``ml_training`` params: one JSON schema, shown as the trigger form and enforced on every trigger."""

from __future__ import annotations

from airflow.sdk import Param

# include.training's __init__ holds only constants, so parsing a DAG file stays cheap
from include.training import MODEL_TYPES

# every metric a spec's gate may name (include.data.spec.HIGHER_IS_BETTER), kept here so that
# parsing a DAG file does not import the spec module
GATE_METRICS = ["roc_auc", "pr_auc", "log_loss", "macro_f1", "rmse", "mae", "r2"]


def training_params() -> dict[str, Param]:
    return {
        "model_type": Param(
            "torch_mlp",
            type="string",
            enum=list(MODEL_TYPES),
            section="Model",
            title="Model type",
            description="torch_mlp: a PyTorch MLP (uses CUDA when present, the CPU otherwise). "
            "sklearn_hgb: scikit-learn HistGradientBoosting (classifier or regressor, by the dataset's task).",
            values_display={"torch_mlp": "PyTorch MLP", "sklearn_hgb": "scikit-learn gradient boosting"},
        ),
        "epochs": Param(
            10,
            type="integer",
            minimum=1,
            maximum=500,
            section="Model",
            description="Passes over the training data (boosting rounds scale with it).",
        ),
        "learning_rate": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=1,
            section="Model",
            title="Learning rate",
            description="Optimizer step size. Empty: 0.001 for torch_mlp, 0.1 for sklearn_hgb.",
        ),
        "batch_size": Param(
            256,
            type="integer",
            minimum=8,
            maximum=65536,
            section="Model",
            title="Batch size",
            description="Rows per optimizer step (torch_mlp).",
        ),
        "gpus": Param(
            1,
            type="integer",
            minimum=0,
            maximum=8,
            section="Resources",
            description="GPUs requested by the training pod (kubernetes profile). "
            "The local profile uses a GPU when one is present.",
        ),
        "training_window_days": Param(
            28,
            type="integer",
            minimum=1,
            maximum=3660,
            section="Data",
            title="Training window (days)",
            description="Number of daily partitions the model learns from.",
        ),
        "training_window_end": Param(
            None,
            type=["null", "string"],
            format="date",
            section="Data",
            title="Training window end",
            description="Last day included (YYYY-MM-DD). Empty: the day before the run.",
        ),
        "gate_metric": Param(
            None,
            type=["null", "string"],
            enum=[None, *GATE_METRICS],
            section="Gate",
            title="Gate metric",
            description="The metric the gate reads. Empty: the dataset spec's gate.metric "
            "(binary roc_auc, multiclass macro_f1, regression rmse by default).",
        ),
        "gate_min": Param(
            None,
            type=["null", "number"],
            section="Gate",
            title="Gate bar",
            description="The bar the challenger must reach on the gate metric: a floor "
            "(roc_auc, pr_auc, macro_f1, r2) or a ceiling (rmse, mae, log_loss). "
            "Empty: the spec's gate.min, or beating the no-skill baseline.",
        ),
        "max_regression": Param(
            None,
            type=["null", "number"],
            minimum=0,
            section="Gate",
            title="Maximum regression",
            description="Largest loss on the gate metric tolerated against the champion, "
            "overall and on every slice, in the metric's units. "
            "Empty: the spec's gate.max_regression.",
        ),
        "latency_budget_ms": Param(
            50,
            type="number",
            exclusiveMinimum=0,
            maximum=10000,
            section="Gate",
            title="Latency budget (ms)",
            description="p95 time the challenger may take to answer one request.",
        ),
        "reason": Param(
            "manual",
            type="string",
            minLength=1,
            maxLength=500,
            section="Run",
            description="Why this run was started; recorded on the model version.",
        ),
        "drift": Param(
            None,
            type=["null", "object"],
            section="Run",
            title="Drift evidence",
            description="Set by drift_monitor when it triggers a retraining: the window and "
            "the drift numbers that warranted it.",
        ),
    }


def drift_params() -> dict[str, Param]:
    return {
        "drift_share_threshold": Param(
            0.3,
            type="number",
            minimum=0,
            maximum=1,
            section="Thresholds",
            title="Drift share threshold",
            description="Retrain when at least this share of the feature columns "
            "drifted against the champion's training data.",
        ),
        "performance_drop_threshold": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            section="Thresholds",
            title="Performance drop threshold",
            description="Retrain when the task's metric (the spec's gate.metric) on the "
            "window's labelled requests is this much worse than on the "
            "champion's held-out rows, in the metric's units.",
        ),
        "window_days": Param(
            1,
            type="integer",
            minimum=1,
            maximum=90,
            section="Guards",
            title="Window (days)",
            description="Days of traffic each check compares, ending with the run's own day: "
            "a low-traffic model (a few rows a day) needs several.",
        ),
        "min_rows": Param(
            200,
            type="integer",
            minimum=1,
            section="Guards",
            title="Minimum rows",
            description="A window with fewer served requests is skipped as insufficient data.",
        ),
        "cooldown_days": Param(
            7,
            type="integer",
            minimum=0,
            maximum=90,
            section="Guards",
            title="Cooldown (days of data)",
            description="No second retraining from a window within this many days "
            "of the window that last triggered one.",
        ),
        "allow_backfill_retrain": Param(
            False,
            type="boolean",
            section="Guards",
            title="Retrain from backfills",
            description="Backfill runs only report drift unless this is set.",
        ),
    }
