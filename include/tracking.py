"""MLflow set-up shared by every step: tracking URI and experiments.

Called explicitly by each entry point (never at import) so that tests and the
two profiles can point at different stores.
"""
from __future__ import annotations

from pathlib import Path

from include.settings import Settings

TRAINING_EXPERIMENT = "ml_training"


def configure(settings: Settings) -> None:
    import mlflow

    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)


def ensure_experiment(settings: Settings, name: str) -> str:
    """Experiment id for ``name``, created with the profile's artifact root if missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure(settings)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = f"{settings.artifact_root.rstrip('/')}/{name}" if settings.artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # another process created it between our read and our write
        return client.get_experiment_by_name(name).experiment_id
