"""The ``check_drift`` task of the kubernetes profile: the drift check in a pod of its own.

The pod runs ``python -m include.monitoring.nightly`` in the monitoring image (the
project's Airflow image, docker/airflow.Dockerfile, which holds the monitoring
libraries); the command writes its result to ``/airflow/xcom/return.json`` and the
operator's sidecar pushes it to XCom, the same dict the local profile's task returns.
This module imports the Kubernetes provider, so it is imported only where the
kubernetes profile builds its ``check_drift`` task
(:func:`mlops_airflow.drift_check.drift_check_task`).

The drift pod, as built by :func:`drift_check_pod`:

- resources: CPU and memory from the Variables ``drift_cpu`` / ``drift_memory``
  (defaults 2 and 8Gi), requests equal to limits; no GPU, no node placement.
- image: the Variable ``monitoring_image``; namespace: ``training_namespace``, where the
  Secrets below live.
- settings: ``MLOPS_PROFILE``, ``MLFLOW_TRACKING_URI`` from the ``mlflow_default``
  connection's ``tracking_uri`` extra (which may not embed a password), and the locations
  the worker's own settings hold when the pod is built: the inference log, the reports,
  the DVC remote, the data registry's remote, the artifact root, the model name and the
  dataset spec (relative to the project when it lies in it, so it resolves in the image).
- exit codes (:mod:`include.monitoring.nightly`): insufficient data ends the task as
  *skipped* (``skip_on_exit_code``); a broken window fails it without a retry.
- credentials only from Kubernetes Secrets, and the hardening of the training pod:
  non-root (the image's ``airflow`` user), no privilege escalation, all capabilities
  dropped, RuntimeDefault seccomp, no service account token, the XCom sidecar likewise
  (:mod:`mlops_airflow.training_pod`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from include.monitoring.nightly import EXIT_BROKEN_WINDOW, EXIT_INSUFFICIENT_DATA, MODULE
from mlops_airflow.training_pod import (
    PodShape,
    _refuse_literal_credentials,
    cpu_memory_resources,
    project_pod,
)

DEFAULT_CPU = "2"
DEFAULT_MEMORY = "8Gi"
# the `airflow` user of apache/airflow, the base of docker/airflow.Dockerfile; its files belong to group 0
MONITORING_UID = 50000
MONITORING_GID = 0
# the image is the Airflow image (a few GB): pulling it on a fresh node takes minutes
POD_START_TIMEOUT_S = 600
POD_LABELS = {
    "app.kubernetes.io/name": "churn-drift-check",
    "app.kubernetes.io/component": "monitoring",
    "app.kubernetes.io/part-of": "mlops",
    "app.kubernetes.io/managed-by": "airflow",
}
POD_ANNOTATIONS = {
    # a scale-down would throw away a check that has read most of its window
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}
DRIFT_POD = PodShape(
    MODULE, "drift_cpu", DEFAULT_CPU, "drift_memory", DEFAULT_MEMORY, MONITORING_UID, MONITORING_GID, None,
    POD_LABELS, POD_ANNOTATIONS, POD_START_TIMEOUT_S,
)  # fmt: skip
# the fields of include.settings.Settings the check reads, by the variable that sets each
SETTINGS_ENV = {
    "MLOPS_INFERENCE_LOG": "inference_log",
    "MLOPS_REPORTS": "reports",
    "MLOPS_DVC_REMOTE": "dvc_remote",
    "MLOPS_DATA_REGISTRY_REMOTE": "data_registry_remote",
    "MLOPS_ARTIFACT_ROOT": "artifact_root",
    "MLOPS_MODEL_NAME": "model_name",
    "MLOPS_DATASET_SPEC": "dataset_spec",
}


def settings_env(settings) -> list[k8s.V1EnvVar]:
    """The pod's ``MLOPS_*`` variables: where the worker's ``settings`` say the check's inputs and
    outputs are (unset ones are left out). A dataset spec inside the project is given relative
    to it, so that it resolves under the image's own project folder."""
    from include.settings import PROJECT_ROOT

    env = []
    for name, field in SETTINGS_ENV.items():
        value = getattr(settings, field)
        if value is None:
            continue
        if field == "dataset_spec" and Path(value).is_relative_to(PROJECT_ROOT):
            value = Path(value).relative_to(PROJECT_ROOT)
        env.append(k8s.V1EnvVar(name=name, value=str(value)))
    return env


def _base_container_exit_code(remote_pod: k8s.V1Pod | None, container: str) -> int | None:
    statuses = (remote_pod.status.container_statuses if remote_pod and remote_pod.status else None) or []
    status = next((status for status in statuses if status.name == container), None)
    terminated = status.state.terminated if status and status.state else None
    return terminated.exit_code if terminated else None


class DriftCheckPodOperator(KubernetesPodOperator):
    """The drift check's pod, sized by its Variables and pointed where the worker's settings point.

    CPU and memory are template fields (rendered from Variables before the pod is built);
    the settings are read from the worker's environment when the pod is built, at run time.
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "cpu", "memory")

    def __init__(self, *, cpu: str, memory: str, **kwargs):
        super().__init__(**kwargs)
        self.cpu = cpu
        self.memory = memory

    def build_pod_request_obj(self, context=None, **kwargs) -> k8s.V1Pod:
        """The pod of this run with the CPU and memory of its Variables and the worker's locations.

        Returns the ``V1Pod`` the provider builds. Raises ``ValueError`` naming the Variable when
        ``drift_cpu`` or ``drift_memory`` is not a Kubernetes quantity, when a setting cannot be
        read, or when any env var of the pod carries a credential as a literal value.
        """
        # without a context (dry_run) templates are not rendered: the operator's defaults stand
        if context is not None:
            from include.settings import Settings

            self.container_resources = cpu_memory_resources(
                self.cpu, self.memory, cpu_variable="drift_cpu", memory_variable="drift_memory"
            )
            located = settings_env(Settings.from_env())
            names = {env.name for env in located}
            self.env_vars = [env for env in self.env_vars or [] if env.name not in names] + located
        pod = super().build_pod_request_obj(context, **kwargs)
        _refuse_literal_credentials(pod)
        return pod

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        """The provider's cleanup, with a broken window (exit :data:`EXIT_BROKEN_WINDOW`) failing the
        task for good: a retry would read the same broken window."""
        try:
            super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)
        except AirflowSkipException:
            raise
        except AirflowException as failure:
            if _base_container_exit_code(remote_pod, self.base_container_name) == EXIT_BROKEN_WINDOW:
                raise AirflowFailException(f"the window cannot be compared (see the log above): {failure}") from None
            raise


def drift_check_pod(*, arguments: list[str], execution_timeout: timedelta, **kwargs) -> DriftCheckPodOperator:
    """The ``check_drift`` task as a pod, configured as the module docstring describes.

    ``arguments`` are those of ``python -m include.monitoring.nightly`` (``--xcom-path`` is
    added); ``kwargs`` go to the operator (task id, retries, ...). Returns the operator.
    Raises ``ValueError`` when ``execution_timeout`` is under 10 s.
    """
    return DriftCheckPodOperator(
        name="check-drift",
        namespace="{{ var.value.training_namespace }}",
        image="{{ var.value.monitoring_image }}",
        skip_on_exit_code=EXIT_INSUFFICIENT_DATA,
        **project_pod(DRIFT_POD, arguments, execution_timeout),
        **kwargs,
    )
