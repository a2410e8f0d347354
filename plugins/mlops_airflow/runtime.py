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


KUBERNETES_CONN_ID = "kubernetes_default"
# Airflow Variables (airflow_settings.yaml) that configure the serving Deployment
SERVING_VARIABLES = {
    "serving_namespace": "MLOPS_SERVING_NAMESPACE",
    "serving_image": "MLOPS_SERVING_IMAGE",
    "serving_replicas": "MLOPS_SERVING_REPLICAS",
}


def kubernetes_client(settings):
    """The cluster's API client in the kubernetes profile (None in the local profile).

    Also exports the serving Variables as the ``MLOPS_SERVING_*`` settings that
    ``include.deployment.serving_config.ServingConfig`` reads.
    """
    if settings.profile != "kubernetes":
        return None
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk import Variable

    for variable, env_name in SERVING_VARIABLES.items():
        value = Variable.get(variable, default=None)
        if value not in (None, ""):
            os.environ[env_name] = str(value)
    return KubernetesHook(conn_id=KUBERNETES_CONN_ID).get_conn()
