"""Pyfunc models for the fault-injection suite, in an importable module.

MLflow pickles a ``PythonModel`` by reference, so the model server (started with the
project root on its ``PYTHONPATH``) imports this module again when it loads one.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def _row_noise(frame: pd.DataFrame) -> np.ndarray:
    """A fixed pseudo-random number in [-1, 1) per row, from the row's own values: the same
    rows always get the same noise, so that a served answer equals the expected one."""
    mix = (
        12.9898 * frame["tenure_months"].to_numpy(dtype=float)
        + 78.233 * frame["monthly_charges"].to_numpy(dtype=float)
        + 37.719 * frame["usage_hours_30d"].to_numpy(dtype=float)
    )
    return 2.0 * ((np.sin(mix) * 43758.5453) % 1.0) - 1.0


class BlurredChurnModel(PythonModel):
    """A fixed logistic churn score, blurred by ``noise``: the more noise, the lower its ROC AUC."""

    def __init__(self, noise: float):
        self.noise = noise

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        logit = (
            -1.0
            + 0.35 * frame["support_calls_30d"].to_numpy(dtype=float)
            - 0.6 * (np.log1p(frame["usage_hours_30d"].to_numpy(dtype=float)) - 4.0)
            + 0.8 * (frame["contract"].to_numpy() == "monthly")
            - 0.02 * frame["tenure_months"].to_numpy(dtype=float)
            + self.noise * _row_noise(frame)
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probability = self.probabilities(model_input)
        return pd.DataFrame({"probability": probability, "prediction": (probability >= 0.5).astype(np.int64)})


def _in_model_server() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec is not None and spec.name.startswith("include.serving")


class DiesWhenServedModel(BlurredChurnModel):
    """Answers like a good model anywhere but in the model server, which it kills (SIGKILL)
    on its first prediction: a serving process dying in the middle of the smoke test."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if _in_model_server():
            os.kill(os.getpid(), signal.SIGKILL)
        return super().predict(context, model_input, params)


def log_model(model: PythonModel, example: pd.DataFrame, experiment_id: str) -> tuple[str, str]:
    """Log ``model`` in a run of its own; returns ``(run_id, model_uri)`` like the train step's XCom."""
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(example, BlurredChurnModel(0.0).predict(None, example)),
            # explicit requirements: inferring them starts a subprocess (seconds)
            pip_requirements=["pandas"],
        )
    return run.info.run_id, info.model_uri
