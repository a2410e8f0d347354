"""Small pyfunc models for the serving and deploy tests, and a helper that registers them.

The model classes live in an importable module (not in a test file) because MLflow
pickles a ``PythonModel`` by reference: the serving process imports
``tests.unit.serving_models`` again, which works because the deployer puts the
project root on its ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    from include.settings import Settings

FEATURES = ("tenure_months", "monthly_charges", "support_calls")


def training_frame(rows: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows).astype(float),
            "monthly_charges": rng.uniform(20, 120, rows),
            "support_calls": rng.integers(0, 10, rows).astype(float),
        }
    )
    signal = -0.05 * frame["tenure_months"] + 0.02 * frame["monthly_charges"] + 0.3 * frame["support_calls"]
    labels = (signal + rng.normal(0, 0.5, rows) > signal.median()).astype(int).to_numpy()
    return frame, labels


def sample_frame(rows: int = 5, seed: int = 1) -> pd.DataFrame:
    frame, _ = training_frame(rows=rows, seed=seed)
    return frame


class ChurnModel(PythonModel):
    """A LogisticRegression over FEATURES with the served-model contract (probability, prediction)."""

    def __init__(self, regularization: float = 1.0, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        frame, labels = training_frame(seed=seed)
        self.estimator = LogisticRegression(C=regularization, max_iter=1000).fit(frame[list(FEATURES)], labels)

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(frame[list(FEATURES)])[:, 1]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probability = self.probabilities(model_input)
        return pd.DataFrame({"probability": probability, "prediction": (probability >= 0.5).astype(int)})


class RaisingModel(PythonModel):
    """Loads fine, fails on every prediction: what a model with a broken feature step looks like."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        raise RuntimeError("feature pipeline exploded")


class GarbageModel(PythonModel):
    """Answers, but with probabilities outside [0, 1] and labels outside {0, 1}."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = len(model_input)
        return pd.DataFrame({"probability": np.full(rows, 7.5), "prediction": np.full(rows, 3)})


class LabelOutOfRangeModel(PythonModel):
    """Binary-shaped output with valid probabilities but a label that is neither 0 nor 1."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = len(model_input)
        return pd.DataFrame({"probability": np.full(rows, 0.5), "prediction": np.full(rows, 2)})


class ThreeClassModel(PythonModel):
    """A plain multiclass pyfunc (not the project's model): a class name, its probability and each
    class's, plus a column the server does not answer with."""

    CLASSES = ("low", "mid", "high")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        calls = model_input["support_calls"].to_numpy(dtype=float)
        scores = np.stack([np.exp(-calls), np.full(len(calls), 0.5), calls / 10.0], axis=1)
        probabilities = scores / scores.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        frame = pd.DataFrame(
            {
                "prediction": np.array(self.CLASSES, dtype=object)[best],
                "probability": probabilities[np.arange(len(best)), best],
            }
        )
        for position, name in enumerate(self.CLASSES):
            frame[f"probability_{name}"] = probabilities[:, position]
        frame["debug"] = "not an output column"
        return frame


class ValueModel(PythonModel):
    """A plain regression pyfunc: one ``prediction`` value per row."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"prediction": model_input[list(FEATURES)].sum(axis=1).to_numpy(dtype=float)})


class WrongLengthModel(PythonModel):
    """Answers one prediction fewer than it was asked for."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = max(len(model_input) - 1, 0)
        return pd.DataFrame({"probability": np.full(rows, 0.5), "prediction": np.zeros(rows, dtype=int)})


class UnloadableModel(PythonModel):
    """Fails while the server loads it, so a reload to it must keep the old version."""

    def load_context(self, context):
        raise RuntimeError("model artifacts are corrupt")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        raise AssertionError("never loaded")


def register(model_name: str, python_model) -> str:
    """Log ``python_model`` with a signature over FEATURES and register it; returns the version.

    Needs the MLflow tracking URI to be configured (``include.tracking.configure``).
    """
    import mlflow
    from mlflow.models import infer_signature

    example = sample_frame(rows=3)
    output = pd.DataFrame({"probability": np.full(3, 0.5), "prediction": np.zeros(3, dtype=int)})
    # explicit requirements: inferring them starts a subprocess per model (seconds each)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=python_model,
        signature=infer_signature(example, output),
        pip_requirements=["scikit-learn", "pandas"],
    )
    return str(mlflow.register_model(info.model_uri, model_name).version)


class SlowChurnModel(ChurnModel):
    """A ChurnModel that takes ``delay`` seconds per prediction, to hold a request in flight."""

    def __init__(self, delay: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import time

        time.sleep(self.delay)
        return super().predict(context, model_input, params)


def predict(body: bytes, served, max_rows: int):
    """The server's response to ``body`` for ``served`` (an ``include.serving.model.ServedModel``),
    under a fresh request id: parsed, predicted and encoded as ``POST /invocations`` does it."""
    import uuid

    from include.serving.app import answer

    return answer(body, served, max_rows, str(uuid.uuid4()))[0]


def forget_mlflow_uris() -> None:
    """Undo ``mlflow.set_tracking_uri``/``set_registry_uri`` so later tests read the URI from
    their environment again (MLflow keeps the URI in a module global that outlives a test)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None


@contextmanager
def private_registry(home: Path) -> Iterator[Settings]:
    """The project's settings with an MLflow SQLite store of their own under ``home``,
    configured for this process (one per test module: creating a store costs seconds)."""
    import pytest

    from include.settings import Settings
    from include.tracking import configure

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        settings = Settings.from_env()
        configure(settings)
        try:
            yield settings
        finally:
            forget_mlflow_uris()
