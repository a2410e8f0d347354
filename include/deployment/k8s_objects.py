"""The serving objects through the Kubernetes API (kubernetes profile): read, apply, restore, delete.

:class:`ServingObjects` holds the typed API clients of one namespace for the three kinds
the deploy step manages: the Deployment, the Service and the HorizontalPodAutoscaler.
Applying creates an object when it is absent, else replaces it (PUT) with the
resourceVersion just read, so a change made in between is a conflict, retried on a fresh
read, never silently overwritten. Restoring re-applies an object as it was read (or
deletes it when it did not exist), which is how :mod:`include.deployment.kubernetes`
reverts a failed deploy.

Every call reads the API's own JSON (``_preload_content=False``), never the client's
model classes: those drop any field newer than the client (a rollback re-applying such a
spec would lose it) and some refuse answers the API server does give (e.g. a fresh
HPA's status).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

from include.deployment.k8s_manifests import REVISION_ANNOTATION, deployment_version

log = logging.getLogger(__name__)

DEPLOYMENT, SERVICE, HPA = "Deployment", "Service", "HorizontalPodAutoscaler"
KINDS = (DEPLOYMENT, SERVICE, HPA)
# (typed API attribute, method suffix) of each kind in the Kubernetes Python client
_API = {
    DEPLOYMENT: ("apps", "namespaced_deployment"),
    SERVICE: ("core", "namespaced_service"),
    HPA: ("autoscaling", "namespaced_horizontal_pod_autoscaler"),
}
_CONFLICT_RETRIES = 3
# a Service's allocated addresses cannot change: a replace must carry them over
_SERVICE_ALLOCATED = ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")
# annotations the Deployment controller owns (the revision): it sets new ones for each rollout
_CONTROLLER_ANNOTATIONS = "deployment.kubernetes.io/"


@dataclass(frozen=True)
class Snapshot:
    """The serving objects as read before the deploy, as the API's JSON (None: absent)."""

    deployment: dict[str, Any] | None
    service: dict[str, Any] | None
    hpa: dict[str, Any] | None

    def get(self, kind: str) -> dict[str, Any] | None:
        """The object of ``kind`` (one of :data:`KINDS`), or None when it was absent."""
        return {DEPLOYMENT: self.deployment, SERVICE: self.service, HPA: self.hpa}[kind]

    @property
    def revision(self) -> str | None:
        """The Deployment's revision annotation (a str), None without a Deployment or annotation."""
        if self.deployment is None:
            return None
        return (self.deployment.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)

    @property
    def version(self) -> str | None:
        """The model version the Deployment's pod template serves (a str), None without one."""
        return deployment_version(self.deployment)


class ServingObjects:
    """The serving objects of ``namespace``, through ``api_client`` (a ``kubernetes.client.ApiClient``).

    Every method raises the client's ``ApiException`` for an answer it does not expect
    (a 404 is an absent object where that is fine).
    """

    def __init__(self, api_client: Any, namespace: str):
        from kubernetes import client

        self.namespace = namespace
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    def snapshot(self, name: str) -> Snapshot:
        """The Deployment, Service and HPA named ``name`` as they are now: a :class:`Snapshot`."""
        return Snapshot(self.read(DEPLOYMENT, name), self.read(SERVICE, name), self.read(HPA, name))

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object's JSON (a dict), or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("read", kind, name=name, namespace=self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, kind: str, desired: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Create ``desired``, or replace ``current`` with it; a conflict is retried on a fresh read.

        Returns the object as the API answered (a dict). Raises ``ApiException`` for anything
        else, and for a conflict that outlasts the retries.
        """
        from kubernetes.client.exceptions import ApiException

        name = desired["metadata"]["name"]
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            try:
                if current is None:
                    body = copy.deepcopy(desired)
                    body["metadata"].pop("resourceVersion", None)
                    return self._call("create", kind, namespace=self.namespace, body=body)
                body = _update_body(kind, desired, current)
                return self._call("replace", kind, name=name, namespace=self.namespace, body=body)
            except ApiException as exc:
                # 409: created or changed by someone else since our read
                if exc.status != 409 or attempt == _CONFLICT_RETRIES:
                    raise
                log.info(
                    "%s %s/%s changed since it was read (%s); reading it again", kind, self.namespace, name, exc.reason
                )
                current = self.read(kind, name)
        raise AssertionError("unreachable")

    def restore(self, kind: str, name: str, previous: dict[str, Any] | None) -> dict[str, Any] | None:
        """Put ``kind`` back the way it was: ``previous`` re-applied, or deleted when it did not exist.

        Returns the object as the API answered (None after a delete).
        """
        if previous is None:
            self.delete(kind, name)
            return None
        metadata = previous.get("metadata", {})
        body = {
            "apiVersion": previous.get("apiVersion"),
            "kind": previous.get("kind", kind),
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(metadata.get("labels") or {}),
                "annotations": {
                    key: value
                    for key, value in (metadata.get("annotations") or {}).items()
                    if not key.startswith(_CONTROLLER_ANNOTATIONS)
                },
            },
            "spec": copy.deepcopy(previous.get("spec", {})),
        }
        return self.apply(kind, body, self.read(kind, name))

    def delete(self, kind: str, name: str) -> None:
        """Delete the object (its dependents in the background); an absent one is fine."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete", kind, name=name, namespace=self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def read_status(self, name: str) -> dict[str, Any]:
        """The Deployment ``name`` with its status (a dict), as ``kubectl rollout status`` reads it."""
        return _json(
            self.apps.read_namespaced_deployment_status(name=name, namespace=self.namespace, _preload_content=False)
        )

    def list_pods(self, label_selector: str) -> dict[str, Any]:
        """The PodList (a dict) of the pods matching ``label_selector``."""
        return _json(
            self.core.list_namespaced_pod(
                namespace=self.namespace, _preload_content=False, label_selector=label_selector
            )
        )

    def _call(self, verb: str, kind: str, **kwargs: Any) -> dict[str, Any]:
        api, suffix = _API[kind]
        return _json(getattr(getattr(self, api), f"{verb}_{suffix}")(_preload_content=False, **kwargs))


def _json(response: Any) -> dict[str, Any]:
    """The API's own JSON of a response read with ``_preload_content=False`` (see the module docstring)."""
    payload = json.loads(response.data or b"{}")
    return payload if isinstance(payload, dict) else {}


def _update_body(kind: str, desired: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(desired)
    current_metadata = current.get("metadata") or {}
    body["metadata"]["resourceVersion"] = current_metadata.get("resourceVersion")
    if kind == DEPLOYMENT:
        annotations = body["metadata"].setdefault("annotations", {})
        for key, value in (current_metadata.get("annotations") or {}).items():
            if key.startswith(_CONTROLLER_ANNOTATIONS):
                annotations.setdefault(key, value)
    if kind == SERVICE:
        for key in _SERVICE_ALLOCATED:
            value = (current.get("spec") or {}).get(key)
            if value is not None:
                body["spec"].setdefault(key, value)
    return body
