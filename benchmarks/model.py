"""The demo model the serving and training benchmarks use, trained the way ``ml_training`` trains it.

Its data is the demo's: 28 days x 400 rows of the churn generator (the default
training window), the model the default of the trigger form (``torch_mlp``,
10 epochs, batch 256). It is logged and registered in the benchmarks' own
MLflow store (``benchmarks/.work/mlops``), never the demo's.
"""

from __future__ import annotations

import os
from datetime import date

from benchmarks.common import WORK

HOME = WORK / "mlops"
FIRST_DAY = date(2026, 1, 1)
DAYS = 28
ROWS_PER_DAY = 400
MODEL_NAME = "customer_churn_benchmark"


def settings():
    from include.settings import Settings

    return Settings.from_env({"MLOPS_HOME": str(HOME), "MLOPS_PROFILE": "local", "PATH": os.environ.get("PATH", "")})


def demo_frame(days: int = DAYS, rows_per_day: int = ROWS_PER_DAY, seed: int = 7):
    from include.data.spec import load_spec
    from include.simulation.generate import generate_days

    spec = load_spec(settings().dataset_spec)
    return spec, generate_days(spec, FIRST_DAY, days, rows_per_day, seed)


def registered_version(model_type: str = "torch_mlp") -> tuple[str, str, str]:
    """(tracking URI, model name, version) of a registered demo model, trained on first use."""
    import mlflow

    from include import registry, tracking
    from include.training import DEFAULT_LEARNING_RATES
    from include.training.train import TrainingConfig, train_and_log

    current = settings()
    tracking.configure(current)
    name = f"{MODEL_NAME}_{model_type}"
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{name}'")
    if versions:
        # the first version: a later one is the shadow benchmark's candidate
        return current.tracking_uri, name, str(min(int(version.version) for version in versions))
    spec, frame = demo_frame()
    config = TrainingConfig(
        model_type=model_type, epochs=10, learning_rate=DEFAULT_LEARNING_RATES[model_type], batch_size=256
    )
    result = train_and_log(frame, spec, config, current, {"purpose": "benchmark"})
    version = registry.register_challenger(name, result.model_uri, result.run_id, {"purpose": "benchmark"})
    return current.tracking_uri, name, version


def candidate_version(model_type: str = "torch_mlp") -> str:
    """A second registered version of :func:`registered_version`'s model (same artifacts), registered on first use.

    The shadow benchmark serves it as the candidate: its scoring is exactly one more model call per request.
    """
    import mlflow

    from include import tracking

    tracking.configure(settings())
    _, name, champion = registered_version(model_type)
    client = mlflow.MlflowClient()
    versions = sorted(int(version.version) for version in client.search_model_versions(f"name='{name}'"))
    if len(versions) > 1:
        return str(versions[-1])
    source = client.get_model_version(name, champion)
    # not register_challenger: it finds the version already registered from this run
    created = client.create_model_version(name, source.source, run_id=source.run_id, tags={"purpose": "candidate"})
    return str(created.version)
