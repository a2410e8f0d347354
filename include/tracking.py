"""MLflow set-up shared by every step: tracking URI, client retries and experiments.

Called explicitly by each entry point (never at import) so that tests and the
two profiles can point at different stores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from include.settings import Settings

TRAINING_EXPERIMENT = "ml_training"
# MLflow's own client retries an unreachable tracking server for about four minutes by
# default, inside one task attempt and invisible in the Airflow UI. A few seconds are
# enough for a blip; anything longer is left to the task's retries, whose backoff the UI
# shows. Set any of these in the environment to override them.
CLIENT_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure(settings: Settings) -> None:
    """Point MLflow's tracking and registry at ``settings.tracking_uri`` (creating a SQLite file's folder)."""
    import mlflow

    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for name, value in CLIENT_RETRY_DEFAULTS.items():
        # in the environment, so that the training subprocess and the model server inherit them
        os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)


def ensure_experiment(settings: Settings, name: str) -> str:
    """Returns the experiment id (a str) for ``name``, created with the profile's artifact root if missing."""
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


def end_orphaned_runs(settings: Settings, experiment_name: str, tags: Mapping[str, str], reason: str) -> list[str]:
    """Mark the RUNNING runs of ``experiment_name`` carrying all of ``tags`` as KILLED.

    Returns the ids of the runs it ended, a list of str.

    A training process that was killed (timeout, SIGKILL, a deleted pod) cannot end
    its own run: left RUNNING, it would look like a job still in progress.
    """
    import mlflow

    configure(settings)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    conditions = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    conditions.append("attributes.status = 'RUNNING'")
    ended = []
    for run in client.search_runs([experiment.experiment_id], filter_string=" and ".join(conditions)):
        client.set_tag(run.info.run_id, "mlops.ended_by", reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    return ended
