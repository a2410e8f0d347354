"""A small pyfunc over the demo dataset's features, for tests that serve the demo spec's traffic.

It lives in an importable module, not in a test file, because MLflow pickles a
``PythonModel`` by reference: the serving process imports this module again (the
deployer puts the project root on its ``PYTHONPATH``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class DemoChurnModel(PythonModel):
    """A fixed logistic score of a few demo features: cheap, deterministic and drift-sensitive."""

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        logit = (
            -1.0
            + 0.35 * frame["support_calls_30d"].to_numpy(dtype=float)
            - 0.6 * (np.log1p(frame["usage_hours_30d"].to_numpy(dtype=float)) - 4.0)
            + 0.8 * (frame["contract"].to_numpy() == "monthly")
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probability = self.probabilities(model_input)
        return pd.DataFrame({"probability": probability, "prediction": (probability >= 0.5).astype(np.int64)})


def register_demo_model(model_name: str, example: pd.DataFrame) -> str:
    """Log and register a DemoChurnModel whose signature is ``example``'s columns; returns the version.

    Needs the MLflow tracking URI to be configured (``include.tracking.configure``).
    """
    import mlflow
    from mlflow.models import infer_signature

    model = DemoChurnModel()
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=model,
        signature=infer_signature(example, model.predict(None, example)),
        # explicit requirements: inferring them starts a subprocess (seconds)
        pip_requirements=["pandas"],
    )
    return str(mlflow.register_model(info.model_uri, model_name).version)
