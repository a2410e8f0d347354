"""How the model server runs on Kubernetes (kubernetes profile): :class:`ServingConfig`.

Everything about the serving objects that is not the model version: names, image,
replicas and autoscaling, resources, how the pods reach MLflow and the inference log,
rollout timing. :mod:`include.deployment.k8s_manifests` renders the manifests from it.

Configuration (:meth:`ServingConfig.from_settings`, from the ``serving`` section of
:class:`include.settings.Settings`, which reads these variables when the settings are built):

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

A tracking URI with a password in it is refused: credentials reach the pods only by
reference to a Secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError

from include.settings import ServingFields, validation_message
from include.util.k8s import is_quantity

if TYPE_CHECKING:
    from include.settings import Settings

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_PULL_POLICIES = ("IfNotPresent", "Always", "Never")


def serving_name(model_name: str) -> str:
    """``customer_churn`` -> ``customer-churn-serving``: a DNS label, as Service names must be."""
    base = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    base = re.sub(r"^[^a-z]+", "", base) or "model"
    return f"{base[: 63 - len('-serving')].rstrip('-')}-serving"


class ServingConfig(ServingFields):
    """Everything about the serving objects that is not the model version.

    The fields the ``MLOPS_SERVING_*`` variables set are declared in
    :class:`include.settings.ServingFields`; here ``min_replicas`` and ``max_replicas`` are
    the counts themselves, ``tracking_uri`` and ``inference_log`` the values the pods get
    (None: none), and the rollout timing and extra labels have no variable.

    Checked on construction: raises ``ValueError`` listing every invalid setting at once
    (names, image, replica bounds, resource quantities, tracking URI, inference log, labels).
    """

    min_replicas: int = 2
    max_replicas: int = 6
    revision_history_limit: int = 5
    min_ready_seconds: int = 5
    termination_grace_seconds: int = 30
    extra_labels: Mapping[str, str] = Field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        # pydantic wraps what the checks raise in its own report; the checks' message says it all
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ValueError(validation_message(exc)) from None

    def model_post_init(self, context: Any, /) -> None:
        """Checks the fields together; raises ``ValueError`` listing every problem found."""
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
            problems.append(
                f"autoscaling needs 1 <= min replicas <= max replicas, got {self.min_replicas} and {self.max_replicas}"
            )
        if not 1 <= self.cpu_target_percent <= 100:
            problems.append(f"the CPU target must be a percentage in 1..100, got {self.cpu_target_percent}")
        for what, quantity in (
            ("CPU request", self.cpu_request),
            ("CPU limit", self.cpu_limit),
            ("memory request", self.memory_request),
            ("memory limit", self.memory_limit),
            ("/tmp size", self.tmp_size),
        ):
            if quantity is not None and not is_quantity(quantity):
                problems.append(f"{what} {quantity!r} is not a Kubernetes quantity such as 500m or 2Gi")
        if self.tracking_uri is None and self.tracking_configmap is None:
            problems.append(
                "the pods need an MLflow tracking URI: set MLOPS_SERVING_TRACKING_URI (or "
                "MLFLOW_TRACKING_URI) or MLOPS_SERVING_CONFIGMAP"
            )
        if self.tracking_uri is not None and self.tracking_configmap is None:
            problems.extend(_tracking_uri_problems(self.tracking_uri))
        if self.inference_log is not None and "://" not in self.inference_log:
            problems.append(
                f"the inference log {self.inference_log!r} is a local path, which a pod does not "
                "keep: set MLOPS_SERVING_INFERENCE_LOG (or MLOPS_INFERENCE_LOG) to an object-store "
                "URL such as s3://bucket/inference-log, or to 'off'"
            )
        for what, name in (
            ("ConfigMap", self.tracking_configmap),
            ("Secret", self.credentials_secret),
            ("image pull Secret", self.image_pull_secret),
            ("service account", self.service_account),
        ):
            if name is not None and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name):
                problems.append(f"{what} name {name!r} is not a valid object name")
        if self.progress_deadline_seconds <= self.min_ready_seconds or self.revision_history_limit < 1:
            problems.append(
                "the progress deadline must exceed the minimum ready seconds "
                f"({self.min_ready_seconds}) and the revision history limit must be positive"
            )
        for key, value in self.extra_labels.items():
            if not _LABEL_VALUE.match(value):
                problems.append(f"label {key}={value!r}: not a valid label value")
        if problems:
            raise ValueError("invalid serving configuration: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingConfig:
        """The configuration from the settings' ``serving`` section (see the module docstring).

        The section was read from the ``MLOPS_SERVING_*`` variables, under any overrides (such
        as the serving Airflow Variables), when ``settings`` was built. Unset
        ``MLOPS_SERVING_TRACKING_URI`` and ``MLOPS_SERVING_INFERENCE_LOG`` fall back on
        ``settings``; set empty (or the inference log ``off``) they mean none.

        Returns the checked ``ServingConfig``. Raises ``ValueError`` listing every invalid
        setting (see the class).
        """
        serving = settings.serving
        min_replicas = serving.min_replicas if serving.min_replicas is not None else serving.replicas
        # set empty, the serving variables mean none; unset, the settings' values apply as they are
        inference_log = settings.inference_log if serving.inference_log is None else serving.inference_log or None
        if inference_log is not None and inference_log.lower() == "off":
            inference_log = None
        tracking_uri = settings.tracking_uri if serving.tracking_uri is None else serving.tracking_uri or None
        return cls(
            **serving.model_dump(include=set(ServingFields.model_fields))
            | {
                "min_replicas": min_replicas,
                "max_replicas": serving.max_replicas if serving.max_replicas is not None else 3 * min_replicas,
                "tracking_uri": None if serving.tracking_configmap else tracking_uri,
                "inference_log": inference_log,
            }
        )

    def resource_name(self, model_name: str) -> str:
        """The name of the Deployment, Service and HPA: ``name``, else :func:`serving_name` of the model."""
        return self.name or serving_name(model_name)

    def service_url(self, model_name: str) -> str:
        """Where the deploy step reaches the Service (from a worker inside the cluster).

        Returns ``url`` without a trailing slash when configured, else the Service's
        cluster DNS URL ``http://<name>.<namespace>.svc.<cluster domain>``. Never raises.
        """
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.resource_name(model_name)}.{self.namespace}.svc.{self.cluster_domain}"


def _tracking_uri_problems(uri: str) -> list[str]:
    parts = urlsplit(uri)
    if parts.password:
        return [
            "the MLflow tracking URI carries a password, which would land in the Deployment in clear: "
            "use a URI without credentials and put MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
            "(or MLFLOW_TRACKING_TOKEN) in the credentials Secret (MLOPS_SERVING_SECRET)"
        ]
    if parts.scheme in ("", "file", "sqlite"):
        return [
            f"the MLflow tracking URI {uri!r} is a local store the pods cannot reach: set "
            "MLOPS_SERVING_TRACKING_URI to the tracking server's URL as seen from the cluster"
        ]
    return []
