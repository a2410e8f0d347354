"""What a task needs at run time: the profile's settings, with MLflow taken from its connection."""
from __future__ import annotations

import json
import os

MLFLOW_CONN_ID = "mlflow_default"


def task_settings():
    """Settings for this task; the ``mlflow_default`` connection, when defined, names the tracking server.

    The URI is also exported to the environment so that subprocesses (the
    training command line) and MLflow's own defaults agree with it.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowRuntimeError

    from include.settings import Settings

    try:
        connection = Connection.get(MLFLOW_CONN_ID)
    except AirflowRuntimeError:
        connection = None
    if connection is not None:
        extra = json.loads(connection.extra) if connection.extra else {}
        uri = extra.get("tracking_uri") or (connection.get_uri() if connection.host else None)
        if uri:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    return Settings.from_env()
