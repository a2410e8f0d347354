"""The ``train`` task of the kubernetes profile: a KubernetesPodOperator on a GPU node.

The pod runs ``python -m include.training.train`` in the training image; the
command writes its result to ``/airflow/xcom/return.json`` and the operator's
sidecar pushes it to XCom. This module imports the Kubernetes provider, so it is
imported only where the kubernetes profile builds its ``train`` task
(:func:`mlops_airflow.training.training_task`).

The training pod, as built by :func:`gpu_training_pod`:

- resources: ``nvidia.com/gpu`` = the run's ``gpus`` param (read when the pod is
  built, so each run asks for its own count); CPU and memory from the Variables
  ``training_cpu`` / ``training_memory`` (defaults 4 and 16Gi), requests equal to
  limits so the trainer is never throttled below, or evicted for exceeding, what
  it asked for. ``gpus=0`` runs on CPU: no GPU limit, and none of the GPU
  placement below (no toleration, node selector or node affinity), so the pod
  can land on any node.
- placement: a toleration for the ``nvidia.com/gpu`` NoSchedule taint, the node
  selector of the Variable ``gpu_node_selector`` (JSON object) and, when the
  Variable ``gpu_node_affinity`` is set, that node affinity (JSON, the
  ``nodeAffinity`` object of the Kubernetes API).
- time: 900 s to be scheduled and 900 s more to start (GPU nodes scale up from
  zero and the CUDA image is large); ``activeDeadlineSeconds`` just under the
  task's ``execution_timeout``, so Kubernetes stops the pod itself even if the
  worker that watches it is gone.
- credentials only from Kubernetes Secrets (never a literal value): all keys of
  the Secret ``mlflow-credentials`` (e.g. ``MLFLOW_TRACKING_TOKEN``) and the
  object-store keys of the Secret ``object-store-credentials`` (optional: a
  cluster with workload identity needs none). The tracking URI comes from the
  ``mlflow_default`` connection's ``tracking_uri`` extra and may not embed a password.
- hardening: runs as uid 10001 (the image's ``trainer``), non-root, no privilege
  escalation, all capabilities dropped, RuntimeDefault seccomp, no service
  account token; the XCom sidecar gets the same container security context, so
  the pod meets the "restricted" Pod Security Standard.
- lifecycle: the pod is deleted when it finishes, failed or not, after its log has
  been streamed into the task log and its termination message (the log's tail on
  error) and the pod's events have been added to the task's failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from include.util.k8s import is_quantity
from mlops_airflow.profiles import KUBERNETES
from mlops_airflow.training_local import TRAINING_MODULE

POD_XCOM_PATH = "/airflow/xcom/return.json"
GPU_RESOURCE = "nvidia.com/gpu"
# the `trainer` user of docker/training.Dockerfile
TRAINING_UID = 10001
# Kubernetes Secrets in the training namespace, created by the platform (never by this repository)
MLFLOW_CREDENTIALS_SECRET = "mlflow-credentials"
OBJECT_STORE_SECRET = "object-store-credentials"
OBJECT_STORE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
DEFAULT_CPU = "4"
DEFAULT_MEMORY = "16Gi"
# GPU node pools commonly scale up from zero, and the CUDA image takes minutes to pull
POD_START_TIMEOUT_S = 900
# what the pod's own deadline leaves Airflow to read the failure before execution_timeout fires
DEADLINE_MARGIN_S = 120
POD_LABELS = {
    "app.kubernetes.io/name": "churn-training",
    "app.kubernetes.io/component": "training",
    "app.kubernetes.io/part-of": "mlops",
    "app.kubernetes.io/managed-by": "airflow",
}
POD_ANNOTATIONS = {
    # a scale-down must not evict a running training job (cluster-autoscaler, Karpenter)
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}
# env var names that carry a credential: only ever set from a Secret
CREDENTIAL_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def gpu_resources(gpus: int, cpu: str = DEFAULT_CPU, memory: str = DEFAULT_MEMORY) -> k8s.V1ResourceRequirements:
    """Container resources for a training pod asking for ``gpus`` GPUs (none when 0).

    Requests equal limits: a training job's footprint is known, and a container that
    never uses more than its request is the last one kubelet evicts.

    Returns a ``V1ResourceRequirements`` whose requests and limits hold ``cpu`` and ``memory``
    (limits also ``nvidia.com/gpu`` when ``gpus`` > 0). Raises ``ValueError`` when ``gpus`` is
    not an integer >= 0, or naming the Variable when ``cpu`` or ``memory`` is not a
    Kubernetes quantity (:func:`include.util.k8s.is_quantity`).
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be an integer >= 0, got {gpus!r}")
    resources = cpu_memory_resources(cpu, memory, cpu_variable="training_cpu", memory_variable="training_memory")
    if gpus:
        resources.limits[GPU_RESOURCE] = str(gpus)
    return resources


def cpu_memory_resources(
    cpu: str, memory: str, *, cpu_variable: str, memory_variable: str
) -> k8s.V1ResourceRequirements:
    """Requests equal to limits of ``cpu`` and ``memory``, read from the Variables named.

    Returns a ``V1ResourceRequirements``. Raises ``ValueError`` naming the Variable when
    ``cpu`` or ``memory`` is not a Kubernetes quantity (:func:`include.util.k8s.is_quantity`).
    """
    for name, value in ((cpu_variable, cpu), (memory_variable, memory)):
        if not is_quantity(str(value).strip()):
            raise ValueError(f"Variable {name}={value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    amounts = {"cpu": str(cpu).strip(), "memory": str(memory).strip()}
    return k8s.V1ResourceRequirements(requests=amounts, limits=dict(amounts))


def pod_deadline_seconds(execution_timeout: timedelta) -> int:
    """``activeDeadlineSeconds`` a little under ``execution_timeout``: the pod is stopped by
    Kubernetes first, and Airflow still has time to fetch its log and termination message.

    Returns ``execution_timeout`` in seconds less ``DEADLINE_MARGIN_S`` (or a tenth of it,
    whichever is smaller). Raises ``ValueError`` when ``execution_timeout`` is under 10 s.
    """
    total = int(execution_timeout.total_seconds())
    if total < 10:
        raise ValueError(f"execution_timeout of the pod is too short: {execution_timeout}")
    return total - min(DEADLINE_MARGIN_S, total // 10)


def _json_variable(name: str, text: str | None) -> dict:
    """A JSON object held by a Variable (rendered through a template); empty means {}."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise ValueError(f"Variable {name} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"Variable {name} must hold a JSON object, got {type(value).__name__}")
    return value


def _node_selector(text: str | None) -> dict[str, str]:
    selector = _json_variable("gpu_node_selector", text)
    bad = [key for key, value in selector.items() if not isinstance(value, str)]
    if bad:
        raise ValueError(f"Variable gpu_node_selector: label values must be strings, not for {', '.join(bad)}")
    return selector


def _node_affinity(text: str | None) -> k8s.V1Affinity | None:
    """The ``nodeAffinity`` of the Variable ``gpu_node_affinity`` as a V1Affinity, or None."""
    node_affinity = _json_variable("gpu_node_affinity", text)
    if not node_affinity:
        return None
    affinity = {"nodeAffinity": node_affinity}
    # the client's only public way from API JSON to a model goes through a whole pod
    pod = PodGenerator.deserialize_model_dict({"spec": {"containers": [], "affinity": affinity}})
    # deserializing drops unknown fields silently: a misspelt key would lose the constraint
    if ApiClient().sanitize_for_serialization(pod.spec.affinity) != affinity:
        raise ValueError(
            f"Variable gpu_node_affinity is not a Kubernetes nodeAffinity (unknown or misplaced "
            f"fields): {json.dumps(node_affinity)}"
        )
    return pod.spec.affinity


def restricted_container_security_context() -> k8s.V1SecurityContext:
    """Non-root, no privilege escalation, no capability, RuntimeDefault seccomp: the "restricted" standard."""
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _refuse_literal_credentials(pod: k8s.V1Pod) -> None:
    """No credential may reach the pod spec as a literal value; a Secret reference only."""
    for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
        for env in container.env or []:
            if env.value is None:
                continue
            if CREDENTIAL_NAME.search(env.name):
                raise ValueError(
                    f"env {env.name} of container {container.name} looks like a credential: "
                    f"set it from a Kubernetes Secret, not as a value"
                )
            try:
                password = urlsplit(env.value).password
            except ValueError:
                password = None
            if password:
                raise ValueError(
                    f"env {env.name} of container {container.name} embeds a password in a URL: "
                    f"put the credential in the Secret {MLFLOW_CREDENTIALS_SECRET!r}"
                )


def secret_env(name: str, secret: str, key: str, *, optional: bool) -> k8s.V1EnvVar:
    """The env var ``name`` set from ``key`` of the Kubernetes Secret ``secret``."""
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key, optional=optional)),
    )


class GpuTrainingPodOperator(KubernetesPodOperator):
    """A training pod whose GPUs and placement follow the run's ``gpus`` param.

    The param is only known at run time, so resources, toleration, node
    selector and affinity are set when the pod is built; the Variables they
    come from are template fields, rendered before that.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "cpu",
        "memory",
        "gpu_node_selector",
        "gpu_node_affinity",
    )

    def __init__(self, *, cpu: str, memory: str, gpu_node_selector: str, gpu_node_affinity: str, **kwargs):
        super().__init__(**kwargs)
        self.cpu = cpu
        self.memory = memory
        self.gpu_node_selector = gpu_node_selector
        self.gpu_node_affinity = gpu_node_affinity

    def build_pod_request_obj(self, context=None, **kwargs) -> k8s.V1Pod:
        """The pod of this run, with the resources and placement its ``gpus`` param asks for.

        Returns the ``V1Pod`` the provider builds. Raises ``ValueError`` when a Variable the
        pod reads is malformed (see :func:`gpu_resources`) or when any env var of the pod
        carries a credential as a literal value instead of a Secret reference.
        """
        # without a context (dry_run) templates are not rendered: the operator's defaults stand
        if context is not None:
            gpus = int(context["params"]["gpus"])
            self.container_resources = gpu_resources(gpus, self.cpu, self.memory)
            if gpus:
                self.tolerations = [k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")]
                self.node_selector = _node_selector(self.gpu_node_selector)
                self.affinity = _node_affinity(self.gpu_node_affinity) or {}
            else:
                # a CPU-only run needs no GPU node: it may land anywhere
                self.tolerations, self.node_selector, self.affinity = [], {}, {}
        pod = super().build_pod_request_obj(context, **kwargs)
        _refuse_literal_credentials(pod)
        return pod


def gpu_training_pod(*, arguments: list[str], execution_timeout: timedelta, **kwargs) -> GpuTrainingPodOperator:
    """The ``train`` task as a training pod, configured as the module docstring describes.

    ``arguments`` are those of the training command line (``--xcom-path`` is added);
    ``kwargs`` go to the operator (task id, pool, retries, ...). Returns the operator.
    Raises ``ValueError`` when ``execution_timeout`` is under 10 s.
    """
    return GpuTrainingPodOperator(
        name="train",
        namespace="{{ var.value.training_namespace }}",
        image="{{ var.value.training_image }}",
        gpu_node_selector="{{ var.value.gpu_node_selector }}",
        gpu_node_affinity="{{ var.value.get('gpu_node_affinity', '') }}",
        **project_pod(TRAINING_POD, arguments, execution_timeout),
        **kwargs,
    )


@dataclass(frozen=True)
class PodShape:
    """What tells one of the project's pods from another: the ``module`` it runs, the Variables (and
    their defaults) that size its CPU and memory, the user and group it runs as (``fs_group`` None:
    none), its labels and annotations, and how long it may take to be scheduled and to start (s)."""

    module: str
    cpu_variable: str
    default_cpu: str
    memory_variable: str
    default_memory: str
    uid: int
    gid: int
    fs_group: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    start_timeout_s: int


def project_pod(shape: PodShape, arguments: list[str], execution_timeout: timedelta) -> dict:
    """The keyword arguments of a pod of this project, for a ``KubernetesPodOperator`` subclass taking
    ``cpu`` and ``memory``: ``python -m <shape.module> <arguments> --xcom-path ...`` with the result as
    XCom, the settings' environment (MLflow from the ``mlflow_default`` connection, credentials only
    from Secrets), the hardening (non-root, no privilege, no service account token) and the timeouts,
    as ``shape`` sets them. Returns a dict. Raises ``ValueError`` when ``execution_timeout`` is under 10 s.
    """
    security_context = k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=shape.uid,
        run_as_group=shape.gid,
        fs_group=shape.fs_group,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )
    return dict(
        # pin a tag (or digest) per release: IfNotPresent then never runs a stale image
        image_pull_policy="IfNotPresent",
        cmds=["python", "-m", shape.module],
        arguments=[*arguments, "--xcom-path", POD_XCOM_PATH],
        labels=dict(shape.labels),
        annotations=dict(shape.annotations),
        cpu=f"{{{{ var.value.get('{shape.cpu_variable}', '{shape.default_cpu}') }}}}",
        memory=f"{{{{ var.value.get('{shape.memory_variable}', '{shape.default_memory}') }}}}",
        env_vars=[
            k8s.V1EnvVar(name="MLOPS_PROFILE", value=KUBERNETES),
            k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value="{{ conn.mlflow_default.extra_dejson.tracking_uri }}"),
            # MLflow artifacts, the DVC remote and the inference log on object storage; optional:
            # with workload identity (IRSA, GKE) the pod's service account is the credential
            *(secret_env(key, OBJECT_STORE_SECRET, key, optional=True) for key in OBJECT_STORE_KEYS),
        ],
        # MLFLOW_TRACKING_TOKEN (or _USERNAME/_PASSWORD), whatever the tracking server wants
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=MLFLOW_CREDENTIALS_SECRET))],
        security_context=security_context,
        container_security_context=restricted_container_security_context(),
        xcom_sidecar_container_security_context=restricted_container_security_context(),
        # the project's jobs never talk to the Kubernetes API
        automount_service_account_token=False,
        # the last log lines become the failure message when the job dies without one
        termination_message_policy="FallbackToLogsOnError",
        active_deadline_seconds=pod_deadline_seconds(execution_timeout),
        kubernetes_conn_id="kubernetes_default",
        do_xcom_push=True,
        get_logs=True,
        log_events_on_failure=True,
        # failed pods too: by then the log is in the task log and the termination message and
        # events are in its error, and a kept pod would hold its node from scaling down
        on_finish_action="delete_pod",
        schedule_timeout_seconds=shape.start_timeout_s,
        startup_timeout_seconds=shape.start_timeout_s,
        execution_timeout=execution_timeout,
    )


TRAINING_POD = PodShape(
    TRAINING_MODULE, "training_cpu", DEFAULT_CPU, "training_memory", DEFAULT_MEMORY, *(TRAINING_UID,) * 3,
    POD_LABELS, POD_ANNOTATIONS, POD_START_TIMEOUT_S,
)  # fmt: skip
