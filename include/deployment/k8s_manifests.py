"""Kubernetes manifests of the model server (kubernetes profile), rendered as plain dicts.

Pure functions: no API call, no file written, nothing read at import. The dicts are
what ``kubectl apply -f`` would take (camelCase keys) and what the Kubernetes
Python client accepts as a request body.

- :func:`render_deployment` - an ``apps/v1`` Deployment pinned to one model version:
  the pod template carries the label ``model-version`` and runs
  ``python -m include.serving ... --version N``, so a new version is a new
  ReplicaSet and a rollback is the previous template coming back.
- :func:`render_service` - a ``v1`` ClusterIP Service, port 80 to the pods' 8080.
- :func:`render_hpa` - an ``autoscaling/v2`` HorizontalPodAutoscaler on CPU
  utilisation, or None when autoscaling is off.

Configuration (:meth:`ServingConfig.from_settings`, from the environment):

==================================  ======================================================================
``MLOPS_SERVING_NAMESPACE``         namespace of the serving objects (default ``ml-serving``)
``MLOPS_SERVING_IMAGE``             serving image, built from docker/serving.Dockerfile
                                    (default ``ghcr.io/example/churn-serving:latest``; pin a tag or digest)
``MLOPS_SERVING_IMAGE_PULL_POLICY`` ``IfNotPresent`` (default), ``Always`` or ``Never``
``MLOPS_SERVING_IMAGE_PULL_SECRET`` name of a docker-registry Secret for a private registry (optional)
``MLOPS_SERVING_NAME``              name of the Deployment, Service and HPA
                                    (default ``<model name>-serving``, made DNS-safe)
``MLOPS_SERVING_REPLICAS``          replicas without autoscaling (default 2)
``MLOPS_SERVING_HPA``               ``true`` to add the HorizontalPodAutoscaler (default ``false``)
``MLOPS_SERVING_MIN_REPLICAS``      HPA minimum (default: ``MLOPS_SERVING_REPLICAS``)
``MLOPS_SERVING_MAX_REPLICAS``      HPA maximum (default: 3 x the minimum)
``MLOPS_SERVING_CPU_TARGET``        HPA average CPU utilisation target in percent of the request (default 70)
``MLOPS_SERVING_CPU_REQUEST``       container CPU request (default ``500m``)
``MLOPS_SERVING_CPU_LIMIT``         container CPU limit (default ``2``; empty for none)
``MLOPS_SERVING_MEMORY_REQUEST``    container memory request (default ``1Gi``)
``MLOPS_SERVING_MEMORY_LIMIT``      container memory limit (default ``2Gi``)
``MLOPS_SERVING_TMP_SIZE``          size limit of the writable ``/tmp`` (model artifacts land there; default ``2Gi``)
``MLOPS_SERVING_TRACKING_URI``      MLflow tracking URI as the pods reach it (default: ``MLFLOW_TRACKING_URI``);
                                    set as a plain env value, so it must carry no password
``MLOPS_SERVING_CONFIGMAP``         take ``MLFLOW_TRACKING_URI`` from this ConfigMap's key of that name instead
``MLOPS_SERVING_SECRET``            Secret whose keys all become env vars of the server (``envFrom``):
                                    MLflow and object-store credentials such as ``MLFLOW_TRACKING_TOKEN``,
                                    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
                                    (default ``mlops-serving-credentials``; empty for none)
``MLOPS_SERVING_SERVICE_ACCOUNT``   service account of the pods (for workload identity; default: the namespace's)
``MLOPS_SERVING_INFERENCE_LOG``     object-store URL of the inference log (default: ``MLOPS_INFERENCE_LOG``);
                                    ``off`` for none. A local path is refused: a pod's disk is not kept.
``MLOPS_SERVING_PROGRESS_DEADLINE`` seconds without rollout progress before Kubernetes marks it failed
                                    (default 300)
``MLOPS_SERVING_URL``               URL the deploy step smoke-tests (default
                                    ``http://<name>.<namespace>.svc.cluster.local``, the Service)
``MLOPS_SERVING_CLUSTER_DOMAIN``    cluster DNS domain of that default URL (default ``cluster.local``)
==================================  ======================================================================

No secret value is ever written into a manifest: credentials reach the pods only
by reference to a Secret, and a tracking URI with a password in it is refused.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from include.util.k8s import is_quantity
from include.util.text import parse_bool

if TYPE_CHECKING:
    from include.settings import Settings

CONTAINER_NAME = "model-server"
CONTAINER_PORT = 8080
SERVICE_PORT = 80
PORT_NAME = "http"
RUN_AS_USER = 10001  # the ``server`` user of docker/serving.Dockerfile
MODEL_VERSION_LABEL = "model-version"
MODEL_NAME_LABEL = "model-name"
MODEL_URI_ANNOTATION = "mlops/model-uri"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MANAGED_BY = "airflow-mlops"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
TRACKING_URI_KEY = "MLFLOW_TRACKING_URI"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_PULL_POLICIES = ("IfNotPresent", "Always", "Never")


def serving_name(model_name: str) -> str:
    """``customer_churn`` -> ``customer-churn-serving``: a DNS label, as Service names must be."""
    base = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    base = re.sub(r"^[^a-z]+", "", base) or "model"
    return f"{base[:63 - len('-serving')].rstrip('-')}-serving"


@dataclass(frozen=True)
class ServingConfig:
    """Everything about the serving objects that is not the model version.

    Checked on construction: raises ``ValueError`` listing every invalid setting at once
    (names, image, replica bounds, resource quantities, tracking URI, inference log, labels).
    """

    namespace: str = "ml-serving"
    image: str = "ghcr.io/example/churn-serving:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secret: str | None = None
    name: str | None = None  # None: serving_name(model_name)
    replicas: int = 2
    hpa_enabled: bool = False
    min_replicas: int = 2
    max_replicas: int = 6
    cpu_target_percent: int = 70
    cpu_request: str = "500m"
    cpu_limit: str | None = "2"
    memory_request: str = "1Gi"
    memory_limit: str | None = "2Gi"
    tmp_size: str = "2Gi"
    tracking_uri: str | None = None
    tracking_configmap: str | None = None
    credentials_secret: str | None = "mlops-serving-credentials"
    service_account: str | None = None
    inference_log: str | None = None  # an object-store URL, or None for no inference log
    progress_deadline_seconds: int = 300
    revision_history_limit: int = 5
    min_ready_seconds: int = 5
    termination_grace_seconds: int = 30
    url: str | None = None  # None: the Service's cluster DNS name
    cluster_domain: str = "cluster.local"
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not _DNS_LABEL.match(self.namespace):
            problems.append(f"namespace {self.namespace!r} is not a DNS label")
        if self.name is not None and not _DNS_LABEL.match(self.name):
            problems.append(f"name {self.name!r} is not a DNS label (lower case, digits and '-', at most 63)")
        if not self.image or any(character.isspace() for character in self.image):
            problems.append(f"image {self.image!r} is not an image reference")
        if self.image_pull_policy not in _PULL_POLICIES:
            problems.append(f"image pull policy {self.image_pull_policy!r} is not one of {', '.join(_PULL_POLICIES)}")
        if self.replicas < 1:
            problems.append(f"replicas must be at least 1, got {self.replicas}")
        if self.hpa_enabled and not 1 <= self.min_replicas <= self.max_replicas:
            problems.append(f"autoscaling needs 1 <= min replicas <= max replicas, got {self.min_replicas} and "
                            f"{self.max_replicas}")
        if not 1 <= self.cpu_target_percent <= 100:
            problems.append(f"the CPU target must be a percentage in 1..100, got {self.cpu_target_percent}")
        for what, quantity in (("CPU request", self.cpu_request), ("CPU limit", self.cpu_limit),
                               ("memory request", self.memory_request), ("memory limit", self.memory_limit),
                               ("/tmp size", self.tmp_size)):
            if quantity is not None and not is_quantity(quantity):
                problems.append(f"{what} {quantity!r} is not a Kubernetes quantity such as 500m or 2Gi")
        if self.tracking_uri is None and self.tracking_configmap is None:
            problems.append("the pods need an MLflow tracking URI: set MLOPS_SERVING_TRACKING_URI (or "
                            "MLFLOW_TRACKING_URI) or MLOPS_SERVING_CONFIGMAP")
        if self.tracking_uri is not None and self.tracking_configmap is None:
            problems.extend(_tracking_uri_problems(self.tracking_uri))
        if self.inference_log is not None and "://" not in self.inference_log:
            problems.append(f"the inference log {self.inference_log!r} is a local path, which a pod does not "
                            "keep: set MLOPS_SERVING_INFERENCE_LOG (or MLOPS_INFERENCE_LOG) to an object-store "
                            "URL such as s3://bucket/inference-log, or to 'off'")
        for what, name in (("ConfigMap", self.tracking_configmap), ("Secret", self.credentials_secret),
                           ("image pull Secret", self.image_pull_secret),
                           ("service account", self.service_account)):
            if name is not None and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name):
                problems.append(f"{what} name {name!r} is not a valid object name")
        if self.progress_deadline_seconds <= self.min_ready_seconds or self.revision_history_limit < 1:
            problems.append("the progress deadline must exceed the minimum ready seconds "
                            f"({self.min_ready_seconds}) and the revision history limit must be positive")
        for key, value in self.extra_labels.items():
            if not _LABEL_VALUE.match(value):
                problems.append(f"label {key}={value!r}: not a valid label value")
        if problems:
            raise ValueError("invalid serving configuration: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> ServingConfig:
        """The configuration from ``MLOPS_SERVING_*`` (see the module docstring), falling back on ``settings``.

        Returns the checked ``ServingConfig``. Raises ``ValueError`` naming the variable when a
        number or a flag cannot be read, or listing every invalid setting (see the class).
        """
        env = os.environ if environ is None else environ

        def text(name: str, default: str | None) -> str | None:
            value = env.get(name)
            if value is None:
                return default
            value = value.strip()
            return value or None

        def number(name: str, default: int) -> int:
            value = env.get(name, "").strip()
            if not value:
                return default
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a whole number") from None

        def flag(name: str) -> bool:
            value = env.get(name, "")
            try:
                return parse_bool(value, name)
            except ValueError:
                # parse_bool lists every spelling; this names the variable and its value, as before
                raise ValueError(f"{name}={value.strip().lower()!r} is not true or false") from None

        replicas = number("MLOPS_SERVING_REPLICAS", 2)
        min_replicas = number("MLOPS_SERVING_MIN_REPLICAS", replicas)
        inference_log = text("MLOPS_SERVING_INFERENCE_LOG", settings.inference_log)
        if inference_log is not None and inference_log.lower() == "off":
            inference_log = None
        configmap = text("MLOPS_SERVING_CONFIGMAP", None)
        return cls(
            namespace=text("MLOPS_SERVING_NAMESPACE", None) or "ml-serving",
            image=text("MLOPS_SERVING_IMAGE", None) or cls.image,
            image_pull_policy=text("MLOPS_SERVING_IMAGE_PULL_POLICY", None) or cls.image_pull_policy,
            image_pull_secret=text("MLOPS_SERVING_IMAGE_PULL_SECRET", None),
            name=text("MLOPS_SERVING_NAME", None),
            replicas=replicas,
            hpa_enabled=flag("MLOPS_SERVING_HPA"),
            min_replicas=min_replicas,
            max_replicas=number("MLOPS_SERVING_MAX_REPLICAS", 3 * min_replicas),
            cpu_target_percent=number("MLOPS_SERVING_CPU_TARGET", 70),
            cpu_request=text("MLOPS_SERVING_CPU_REQUEST", None) or cls.cpu_request,
            cpu_limit=text("MLOPS_SERVING_CPU_LIMIT", cls.cpu_limit),
            memory_request=text("MLOPS_SERVING_MEMORY_REQUEST", None) or cls.memory_request,
            memory_limit=text("MLOPS_SERVING_MEMORY_LIMIT", cls.memory_limit),
            tmp_size=text("MLOPS_SERVING_TMP_SIZE", None) or cls.tmp_size,
            tracking_uri=None if configmap else text("MLOPS_SERVING_TRACKING_URI", settings.tracking_uri),
            tracking_configmap=configmap,
            credentials_secret=text("MLOPS_SERVING_SECRET", cls.credentials_secret),
            service_account=text("MLOPS_SERVING_SERVICE_ACCOUNT", None),
            inference_log=inference_log,
            progress_deadline_seconds=number("MLOPS_SERVING_PROGRESS_DEADLINE", 300),
            url=text("MLOPS_SERVING_URL", None),
            cluster_domain=text("MLOPS_SERVING_CLUSTER_DOMAIN", None) or cls.cluster_domain,
        )

    def resource_name(self, model_name: str) -> str:
        return self.name or serving_name(model_name)

    def service_url(self, model_name: str) -> str:
        """Where the deploy step reaches the Service (from a worker inside the cluster)."""
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.resource_name(model_name)}.{self.namespace}.svc.{self.cluster_domain}"


def _tracking_uri_problems(uri: str) -> list[str]:
    parts = urlsplit(uri)
    if parts.password:
        return ["the MLflow tracking URI carries a password, which would land in the Deployment in clear: "
                "use a URI without credentials and put MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN) in the credentials Secret (MLOPS_SERVING_SECRET)"]
    if parts.scheme in ("", "file", "sqlite"):
        return [f"the MLflow tracking URI {uri!r} is a local store the pods cannot reach: set "
                "MLOPS_SERVING_TRACKING_URI to the tracking server's URL as seen from the cluster"]
    return []


def label_value(text: str) -> str:
    """``text`` made a valid label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def pod_selector(resource_name: str) -> dict[str, str]:
    """The labels the Service and the Deployment called ``resource_name`` select pods by: stable
    across versions (a Deployment's selector cannot change, and the Service must follow every rollout)."""
    return {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": resource_name}


def selector_labels(model_name: str, config: ServingConfig) -> dict[str, str]:
    return pod_selector(config.resource_name(model_name))


def common_labels(model_name: str, config: ServingConfig) -> dict[str, str]:
    return {
        **config.extra_labels,
        **selector_labels(model_name, config),
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_NAME_LABEL: label_value(model_name),
    }


def _metadata(model_name: str, config: ServingConfig, labels: dict[str, str],
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": config.resource_name(model_name), "namespace": config.namespace,
                                "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def container_args(model_name: str, version: str, config: ServingConfig) -> list[str]:
    args = ["--host", "0.0.0.0", "--allow-remote", "--port", str(CONTAINER_PORT),
            "--model-name", model_name, "--version", version]
    if config.inference_log is None:
        args.append("--no-inference-log")
    else:
        args += ["--inference-log", config.inference_log]
    return args


def _environment(model_name: str, config: ServingConfig) -> list[dict[str, Any]]:
    if config.tracking_configmap is not None:
        tracking: dict[str, Any] = {"name": TRACKING_URI_KEY, "valueFrom": {"configMapKeyRef": {
            "name": config.tracking_configmap, "key": TRACKING_URI_KEY}}}
    else:
        tracking = {"name": TRACKING_URI_KEY, "value": config.tracking_uri}
    return [
        {"name": "MLOPS_PROFILE", "value": "kubernetes"},
        {"name": "MLOPS_MODEL_NAME", "value": model_name},
        tracking,
        # the root filesystem is read-only: everything the server writes goes to the /tmp volume
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "MLOPS_HOME", "value": "/tmp/mlops"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def _probe(period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    return {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures, "successThreshold": 1}


def render_deployment(model_name: str, version: str, config: ServingConfig,
                      replicas: int | None = None) -> dict[str, Any]:
    """The Deployment serving ``model_name`` ``version``.

    ``replicas`` overrides the configured count; the deployer passes the live count
    when an HPA owns it, so that a rollout does not undo the autoscaler's choice.
    """
    from include.registry import model_uri
    from include.serving import validate_version

    version = validate_version(version)
    labels = {**common_labels(model_name, config), MODEL_VERSION_LABEL: version}
    uri = model_uri(model_name, version)
    if replicas is None:
        replicas = config.min_replicas if config.hpa_enabled else config.replicas
    resources: dict[str, Any] = {"requests": {"cpu": config.cpu_request, "memory": config.memory_request}}
    limits = {key: value for key, value in (("cpu", config.cpu_limit), ("memory", config.memory_limit)) if value}
    if limits:
        resources["limits"] = limits
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        # the image's own ENTRYPOINT, spelled out so that the port and the version are in the manifest
        "command": ["python", "-m", "include.serving"],
        "args": container_args(model_name, version, config),
        "ports": [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _environment(model_name, config),
        "resources": resources,
        # loading the model takes a while: the startup probe holds the liveness probe off until /health answers
        "startupProbe": _probe(period=5, failures=36),
        "readinessProbe": _probe(period=5, failures=3),
        "livenessProbe": _probe(period=10, failures=3, timeout=5),
        # the endpoints controller and kube-proxy take a moment to stop sending traffic to a terminating pod
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if config.credentials_secret is not None:
        container["envFrom"] = [{"secretRef": {"name": config.credentials_secret}}]
    pod_spec: dict[str, Any] = {
        # the server never talks to the Kubernetes API
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": config.termination_grace_seconds,
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(model_name, config)},
        }],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size}}],
    }
    if config.service_account is not None:
        pod_spec["serviceAccountName"] = config.service_account
    if config.image_pull_secret is not None:
        pod_spec["imagePullSecrets"] = [{"name": config.image_pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(model_name, config, labels, {MODEL_VERSION_LABEL: version, MODEL_URI_ANNOTATION: uri}),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": config.revision_history_limit,
            "progressDeadlineSeconds": config.progress_deadline_seconds,
            "minReadySeconds": config.min_ready_seconds,
            "selector": {"matchLabels": selector_labels(model_name, config)},
            # never fewer ready pods than wanted: the old version serves until the new one is ready
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        MODEL_URI_ANNOTATION: uri,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(CONTAINER_PORT),
                        "prometheus.io/path": METRICS_PATH,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def render_service(model_name: str, config: ServingConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(model_name, config, common_labels(model_name, config)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(model_name, config),
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def render_hpa(model_name: str, config: ServingConfig) -> dict[str, Any] | None:
    if not config.hpa_enabled:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(model_name, config, common_labels(model_name, config)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": config.resource_name(model_name)},
            "minReplicas": config.min_replicas,
            "maxReplicas": config.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": config.cpu_target_percent}}}],
            # scale in slowly: a brief lull must not drop the capacity the next burst needs
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def render_all(model_name: str, version: str, config: ServingConfig) -> list[dict[str, Any]]:
    """Deployment, Service and (when autoscaling is on) HPA, in the order they are applied."""
    manifests = [render_deployment(model_name, version, config), render_service(model_name, config)]
    hpa = render_hpa(model_name, config)
    return manifests + ([hpa] if hpa is not None else [])


def deployment_version(deployment: Mapping[str, Any] | None) -> str | None:
    """The model version a Deployment's pod template serves (its ``model-version`` label, else ``--version``)."""
    if not deployment:
        return None
    template = (deployment.get("spec") or {}).get("template") or {}
    version = ((template.get("metadata") or {}).get("labels") or {}).get(MODEL_VERSION_LABEL)
    if version:
        return str(version)
    for container in (template.get("spec") or {}).get("containers") or []:
        arguments = list(container.get("command") or []) + list(container.get("args") or [])
        for flag, value in zip(arguments, arguments[1:]):
            if flag == "--version":
                return str(value)
    return None
