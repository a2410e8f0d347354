"""Kubernetes manifests of the model server (kubernetes profile), rendered as plain dicts.

Pure functions: no API call, no file written, nothing read at import. The dicts are
what ``kubectl apply -f`` would take (camelCase keys) and what the Kubernetes
Python client accepts as a request body.

- :func:`render_deployment` - an ``apps/v1`` Deployment pinned to one model version:
  the pod template carries the label ``model-version`` and runs
  ``python -m include.serving ... --version N``, so a new version is a new
  ReplicaSet and a rollback is the previous template coming back. A rollout
  (:class:`~include.deployment.rollout_config.RolloutConfig`) adds ``--candidate-version``,
  ``--rollout-mode``, ``--canary-share`` and ``--sticky-column`` (and ``--allow-score-with``,
  so that the deploy step's smoke test can have the candidate answer through the Service),
  which :func:`deployment_rollout` reads back.
- :func:`render_service` - a ``v1`` ClusterIP Service, port 80 to the pods' 8080.
- :func:`render_hpa` - an ``autoscaling/v2`` HorizontalPodAutoscaler on CPU
  utilisation, or None when autoscaling is off.

The configuration is :class:`~include.deployment.serving_config.ServingConfig`.

No secret value is ever written into a manifest: credentials reach the pods only
by reference to a Secret, and a tracking URI with a password in it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from include.deployment.rollout_config import RolloutConfig
from include.deployment.serving_config import ServingConfig

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


def label_value(text: str) -> str:
    """Returns ``text`` made a valid label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def pod_selector(resource_name: str) -> dict[str, str]:
    """The labels the Service and the Deployment called ``resource_name`` select pods by: stable
    across versions (a Deployment's selector cannot change, and the Service must follow every rollout).

    Returns a dict of label name to value.
    """
    return {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": resource_name}


def common_labels(model_name: str, config: ServingConfig) -> dict[str, str]:
    """The labels every object for ``model_name`` carries (extra, selector, model name): a dict of str to str."""
    return {
        **config.extra_labels,
        **pod_selector(config.resource_name(model_name)),
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_NAME_LABEL: label_value(model_name),
    }


def _metadata(
    model_name: str, config: ServingConfig, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": config.resource_name(model_name),
        "namespace": config.namespace,
        "labels": labels,
    }
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def container_args(
    model_name: str, version: str, config: ServingConfig, rollout: RolloutConfig | None = None
) -> list[str]:
    """The model server's command-line arguments for ``model_name`` ``version`` (with ``rollout``), a list of str."""
    args = [
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--port",
        str(CONTAINER_PORT),
        "--model-name",
        model_name,
        "--version",
        version,
    ]
    if config.inference_log is None:
        args.append("--no-inference-log")
    else:
        args += ["--inference-log", config.inference_log]
    if rollout is not None:
        args += [*rollout.server_args(), "--allow-score-with"]
    return args


def _environment(model_name: str, config: ServingConfig) -> list[dict[str, Any]]:
    if config.tracking_configmap is not None:
        tracking: dict[str, Any] = {
            "name": TRACKING_URI_KEY,
            "valueFrom": {"configMapKeyRef": {"name": config.tracking_configmap, "key": TRACKING_URI_KEY}},
        }
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
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def render_deployment(
    model_name: str,
    version: str,
    config: ServingConfig,
    replicas: int | None = None,
    rollout: RolloutConfig | None = None,
) -> dict[str, Any]:
    """The Deployment serving ``model_name`` ``version`` (with ``rollout``'s candidate beside it), as a manifest dict.

    ``replicas`` overrides the configured count; the deployer passes the live count
    when an HPA owns it, so that a rollout does not undo the autoscaler's choice.
    Raises ``ValueError`` (from :func:`~include.registry.validate_version`) for a malformed version.
    """
    from include.registry import model_uri, validate_version

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
        "args": container_args(model_name, version, config, rollout),
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
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": pod_selector(config.resource_name(model_name))},
            }
        ],
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
            "selector": {"matchLabels": pod_selector(config.resource_name(model_name))},
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
    """The ClusterIP Service in front of ``model_name``'s pods, as a manifest dict."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(model_name, config, common_labels(model_name, config)),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(config.resource_name(model_name)),
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def render_hpa(model_name: str, config: ServingConfig) -> dict[str, Any] | None:
    """The HorizontalPodAutoscaler (CPU utilisation) as a manifest dict, or None when the HPA is disabled."""
    if not config.hpa_enabled:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(model_name, config, common_labels(model_name, config)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": config.resource_name(model_name)},
            "minReplicas": config.min_replicas,
            "maxReplicas": config.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": config.cpu_target_percent},
                    },
                }
            ],
            # scale in slowly: a brief lull must not drop the capacity the next burst needs
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def deployment_version(deployment: Mapping[str, Any] | None) -> str | None:
    """The model version a Deployment's pod template serves (its ``model-version`` label, else ``--version``).

    Returns the version as a str, or None for no Deployment or one that names no version. Never raises.
    """
    if not deployment:
        return None
    template = (deployment.get("spec") or {}).get("template") or {}
    version = ((template.get("metadata") or {}).get("labels") or {}).get(MODEL_VERSION_LABEL)
    if version:
        return str(version)
    for container in (template.get("spec") or {}).get("containers") or []:
        arguments = list(container.get("command") or []) + list(container.get("args") or [])
        for flag, value in zip(arguments, arguments[1:], strict=False):
            if flag == "--version":
                return str(value)
    return None


def deployment_rollout(deployment: Mapping[str, Any] | None) -> RolloutConfig | None:
    """The rollout a Deployment's server runs (from its container's arguments), or None when it runs none.

    Raises ``ValueError`` for arguments that name a malformed rollout.
    """
    if not deployment:
        return None
    template = (deployment.get("spec") or {}).get("template") or {}
    for container in (template.get("spec") or {}).get("containers") or []:
        if container.get("name") != CONTAINER_NAME:
            continue
        arguments = list(container.get("args") or [])
        options = dict(zip(arguments, arguments[1:], strict=False))
        if "--candidate-version" not in options:
            return None
        return RolloutConfig(
            candidate_version=options["--candidate-version"],
            mode=options.get("--rollout-mode", ""),
            canary_share=float(options.get("--canary-share", 0.0)),
            sticky_column=options.get("--sticky-column"),
        )
    return None
