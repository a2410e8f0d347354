"""What a task needs at run time: the profile's settings, with MLflow taken from its connection
and the serving Deployment from its Airflow Variables, passed in as explicit overrides."""

from __future__ import annotations

import json

MLFLOW_CONN_ID = "mlflow_default"
KUBERNETES_CONN_ID = "kubernetes_default"
# Airflow Variables (airflow_settings.yaml) that configure the serving Deployment, and the
# fields of the settings' serving section (MLOPS_SERVING_NAMESPACE, ...) they override
SERVING_VARIABLES = {
    "serving_namespace": "namespace",
    "serving_image": "image",
    "serving_replicas": "replicas",
}


def task_settings():
    """Settings for this task, from the environment with Airflow's configuration over it.

    The ``mlflow_default`` connection, when defined, names the tracking server; in the
    kubernetes profile the serving Variables (``serving_namespace``, ``serving_image``,
    ``serving_replicas``) set the settings' serving section. Nothing is written to
    ``os.environ``: a subprocess gets the tracking URI from the settings explicitly.

    Returns an ``include.settings.Settings``. Raises ``ValueError`` naming the variable when
    a setting (or a serving Variable) cannot be read.
    """
    from include.settings import Settings

    overrides = {}
    uri = _connection_tracking_uri()
    if uri:
        overrides["tracking_uri"] = uri
    settings = Settings.from_env(overrides=overrides)
    if settings.profile != "kubernetes":
        return settings
    serving = _serving_variables()
    return Settings.from_env(overrides={**overrides, "serving": serving}) if serving else settings


def task_settings_and_spec():
    """:func:`task_settings` and the dataset spec they name, for a task that reads both.

    Returns ``(settings, spec)``: an ``include.settings.Settings`` and an
    ``include.data.spec.DatasetSpec``. Raises ``ValueError`` as :func:`task_settings`, and
    ``include.data.spec.SpecError`` for a spec that cannot be read.
    """
    from include.data.spec import load_spec

    settings = task_settings()
    return settings, load_spec(settings.dataset_spec)


def _connection_tracking_uri() -> str | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        connection = Connection.get(MLFLOW_CONN_ID)
    except AirflowRuntimeError:
        return None
    if connection is None:
        return None
    extra = json.loads(connection.extra) if connection.extra else {}
    return extra.get("tracking_uri") or (connection.get_uri() if connection.host else None)


def _serving_variables() -> dict[str, str]:
    """The serving Variables that are set, as overrides of the settings' serving section."""
    from airflow.sdk import Variable

    serving = {}
    for variable, field in SERVING_VARIABLES.items():
        value = Variable.get(variable, default=None)
        if value not in (None, ""):
            serving[field] = str(value)
    return serving


def kubernetes_client(settings):
    """The cluster's API client in the kubernetes profile (None in the local profile).

    Returns a ``kubernetes.client.ApiClient`` from the ``kubernetes_default`` connection.
    """
    if settings.profile != "kubernetes":
        return None
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=KUBERNETES_CONN_ID).get_conn()
