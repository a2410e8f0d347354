"""The kubernetes profile's deploy step: roll the serving Deployment out, smoke-test it through its Service.

:class:`KubernetesDeployer` talks to the cluster through an injected
``kubernetes.client.ApiClient`` (in Airflow: ``KubernetesHook(conn_id).get_conn()``),
so this module imports nothing from Airflow and the tests can hand it an in-memory
API server. ``deploy(model_name, version, sample, expected)``:

1. reads the Deployment, Service and HPA as they are (absent is fine) and remembers
   the Deployment's revision (``deployment.kubernetes.io/revision``) and the version
   its pod template serves;
2. applies the rendered manifests (:mod:`include.deployment.k8s_manifests`) through
   :mod:`include.deployment.k8s_objects`: create when absent, else replace (PUT) with the
   resourceVersion just read, so a change made in between is a conflict, retried on a
   fresh read, never silently overwritten. An HPA that autoscaling no longer wants is
   deleted; while an HPA is on, the live replica count is kept so a rollout does not
   undo the autoscaler;
3. waits for the rollout (:mod:`include.deployment.rollout`: ``kubectl rollout status``
   semantics); a ``ProgressDeadlineExceeded`` condition fails at once, with what the new
   pods report (image pull errors, crash loops);
4. waits until ``/health`` through the Service reports the new version (endpoints and
   kube-proxy lag the pods' readiness by a moment), then runs the shared smoke test
   (:func:`include.deployment.smoke.smoke_test`) through the Service;
5. only then moves ``champion`` (:func:`include.registry.promote_champion`); steps 4 and 5
   and the revert on failure follow the one sequence of :meth:`include.deployment.Deployer.deploy`.

Rollback. ``apps/v1`` has no rollback call (``kubectl rollout undo`` is client-side:
it copies an old ReplicaSet's template into the Deployment). On any failure in 2-5
this deployer re-applies the Deployment *spec it read in step 1* - the whole spec, not
only the pod template, so replicas and strategy come back as well. Its pod template
is the previous ReplicaSet's, so the controller scales that ReplicaSet up again
instead of creating pods of a new kind (and records it as the newest revision, as
``rollout undo`` does). The Service and the HPA are restored the same way, and
anything this deploy created is deleted. It then waits for that rollout and reports
what ``/health`` through the Service says. One exception: when the Deployment read in
step 1 was itself a rollout that had not completed (a deploy interrupted half-way) and
a champion exists, the rollback target is the champion's freshly rendered Deployment,
because re-applying a broken spec would restore nothing. A first deploy (no Deployment
before) that fails deletes the Deployment, Service and HPA it created.

The aliases are never touched on failure; :class:`~include.deployment.DeployFailed`
says which stage failed, why, and what is served now.

Needs, for the Airflow worker's identity in the serving namespace: ``get``, ``create``,
``update`` and ``delete`` on ``deployments``, ``services`` and
``horizontalpodautoscalers`` (autoscaling), ``get`` on ``deployments/status`` and
``list`` on ``pods``; and a network path to the Service (a worker inside the cluster,
or ``MLOPS_SERVING_URL`` pointing at an ingress). Each wait is bounded by
``rollout_timeout``, so a deploy task needs an ``execution_timeout`` above twice that
plus the smoke test.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from include.deployment import Deployer, DeployFailed, Stage
from include.deployment.k8s_manifests import (
    MODEL_NAME_LABEL,
    REVISION_ANNOTATION,
    deployment_rollout,
    deployment_version,
    label_value,
    render_deployment,
    render_hpa,
    render_service,
)
from include.deployment.k8s_objects import DEPLOYMENT, HPA, KINDS, SERVICE, ServingObjects, Snapshot
from include.deployment.rollout import is_complete, pod_problems, pods_label_selector, wait_for_rollout
from include.deployment.serving_config import ServingConfig
from include.deployment.smoke import DEFAULT_REQUEST_TIMEOUT, json_or_none, request, served_version
from include.util.wait import wait_until

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from include.deployment import SmokeResult
    from include.deployment.rollout_config import RolloutConfig
    from include.settings import Settings

log = logging.getLogger(__name__)


class KubernetesDeployer(Deployer):
    """Deploys by rolling out the serving Deployment; see the module docstring for the steps and the rollback.

    ``api_client`` is a ``kubernetes.client.ApiClient``. ``rollout_timeout`` bounds each wait
    for a rollout (the deploy's and the rollback's); ``poll_interval`` is the time between two
    status reads; ``settle_timeout`` bounds the wait for the Service to answer with the new
    version before the smoke test runs (which then reports what it answers instead).
    Raises ``ValueError`` without an ``api_client``, or for an invalid serving configuration.
    """

    def __init__(
        self,
        settings: Settings,
        api_client: Any,
        *,
        config: ServingConfig | None = None,
        rollout_timeout: float = 600.0,
        poll_interval: float = 5.0,
        settle_timeout: float = 30.0,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if api_client is None:
            raise ValueError(
                "KubernetesDeployer needs a kubernetes.client.ApiClient, e.g. "
                "KubernetesHook(conn_id).get_conn() in an Airflow task"
            )
        self.settings = settings
        self.config = config or ServingConfig.from_settings(settings)
        self.api_client = api_client
        self.objects = ServingObjects(api_client, self.config.namespace)
        self.rollout_timeout = rollout_timeout
        self.poll_interval = poll_interval
        self.settle_timeout = settle_timeout
        self.request_timeout = request_timeout
        self._sleep = sleep

    @property
    def namespace(self) -> str:
        """The namespace this deployer works in (a str), from the serving config."""
        return self.config.namespace

    def service_url(self, model_name: str | None = None) -> str:
        """Returns the URL (a str) where the smoke test reaches the model: the Service's cluster DNS name unless
        configured."""
        return self.config.service_url(model_name or self.settings.model_name)

    # ------------------------------------------------------------------ deploy

    def _current(self, model_name: str, version: str, champion: str | None) -> Snapshot:
        name = self.config.resource_name(model_name)
        try:
            snapshot = self.objects.snapshot(name)
            self._check_owner(snapshot, model_name, name)
        except Exception as exc:
            raise DeployFailed(
                model_name,
                version,
                "reading the current Deployment",
                f"{type(exc).__name__}: {exc}",
                "nothing was changed in the cluster",
            ) from exc
        log.info(
            "deploying %s version %s to %s/%s (before: revision %s serving version %s; champion %s)",
            model_name,
            version,
            self.namespace,
            name,
            snapshot.revision,
            snapshot.version,
            champion,
        )
        return snapshot

    def _roll_out(self, model_name: str, version: str, snapshot: Snapshot, stage: Stage) -> str:
        stage.name = "applying the manifests"
        self._apply_manifests(model_name, version, snapshot)
        stage.name = "waiting for the rollout"
        rolled = self._wait_for_rollout(self.config.resource_name(model_name), version)
        log.info("rollout of version %s complete: %s", version, rolled)
        return self.service_url(model_name)

    def _smoke(
        self, url: str, version: str, sample: pd.DataFrame, expected: np.ndarray | None, tolerance: float
    ) -> SmokeResult:
        self._settle(url, version)
        return super()._smoke(url, version, sample, expected, tolerance)

    def _check_owner(self, snapshot: Snapshot, model_name: str, name: str) -> None:
        for kind in KINDS:
            existing = snapshot.get(kind)
            labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
            found = labels.get(MODEL_NAME_LABEL)
            if found is not None and found != label_value(model_name):
                raise RuntimeError(
                    f"{kind} {self.namespace}/{name} serves model {found!r}, not {model_name!r}; "
                    "set MLOPS_SERVING_NAME to give each model its own objects"
                )

    def _apply_manifests(self, model_name: str, version: str, snapshot: Snapshot) -> None:
        name = self.config.resource_name(model_name)
        live_replicas = None
        if self.config.hpa_enabled and snapshot.deployment is not None:
            live_replicas = snapshot.deployment.get("spec", {}).get("replicas")
        desired = {
            DEPLOYMENT: render_deployment(model_name, version, self.config, replicas=live_replicas),
            SERVICE: render_service(model_name, self.config),
            HPA: render_hpa(model_name, self.config),
        }
        for kind in KINDS:
            if desired[kind] is not None:
                self.objects.apply(kind, desired[kind], snapshot.get(kind))
            elif snapshot.get(kind) is not None:
                self.objects.delete(kind, name)

    # ----------------------------------------------------------------- rollouts

    def rollout_status(self, model_name: str) -> RolloutConfig | None:
        """The rollout the serving Deployment's container arguments carry; None without one (or a Deployment)."""
        return deployment_rollout(self.objects.read(DEPLOYMENT, self.config.resource_name(model_name)))

    def endpoint_url(self, model_name: str) -> str:
        return self.service_url(model_name)

    def _serve_rollout(self, model_name: str, champion: str, config: RolloutConfig | None, stage: Stage) -> str:
        """Patch the Deployment's arguments to ``config`` (the champion's version kept), roll it out like a
        version change, and wait until ``/health`` through the Service reports the candidate."""
        name, url = self.config.resource_name(model_name), self.service_url(model_name)
        stage.name = "reading the current Deployment"
        snapshot = self.objects.snapshot(name)
        self._check_owner(snapshot, model_name, name)
        if snapshot.deployment is None or snapshot.version != champion:
            raise RuntimeError(
                f"Deployment {self.namespace}/{name} serves version {snapshot.version}, not the champion {champion}; "
                "deploy the champion before a rollout"
            )
        replicas = snapshot.deployment.get("spec", {}).get("replicas") if self.config.hpa_enabled else None
        desired = render_deployment(model_name, champion, self.config, replicas=replicas, rollout=config)
        stage.name = "applying the Deployment"
        self.objects.apply(DEPLOYMENT, desired, snapshot.deployment)
        stage.name = "waiting for the rollout"
        rolled = self._wait_for_rollout(name, champion)
        candidate = None if config is None else config.candidate_version
        log.info("rollout of %s/%s (candidate %s) complete: %s", self.namespace, name, candidate, rolled)
        stage.name = "waiting for the Service to answer with the rollout"
        self._settle(url, candidate, read=self._served_candidate)
        return url

    def _served_candidate(self, url: str) -> str | None:
        """The candidate version ``/health`` through the Service reports (None: none, or no answer)."""
        try:
            response = request(self._session, "GET", f"{url}/health", timeout=min(2.0, self.request_timeout))
        except Exception:
            return None
        payload = json_or_none(response) if response.status_code == 200 else None
        candidate = payload.get("candidate_version") if isinstance(payload, dict) else None
        return None if candidate is None else str(candidate)

    # ---------------------------------------------------------------- rollback

    def _revert(self, model_name: str, champion: str | None, snapshot: Snapshot) -> str:
        name, url = self.config.resource_name(model_name), self.service_url(model_name)
        if snapshot.deployment is None:
            problems = []
            for kind in reversed(KINDS):
                try:
                    self.objects.restore(kind, name, snapshot.get(kind))
                except Exception as exc:
                    problems.append(f"restoring the {kind} failed: {type(exc).__name__}: {exc}")
            if problems:
                return (
                    f"there was no Deployment before and cleaning up after the failed rollout failed "
                    f"({'; '.join(problems)}); inspect with kubectl -n {self.namespace} get all "
                    f"-l app.kubernetes.io/instance={name}"
                )
            return "nothing is served: there was no Deployment before, so the objects this deploy created were deleted"

        target = snapshot.deployment
        what = (
            f"the Deployment spec of revision {snapshot.revision}"
            if snapshot.revision
            else "the Deployment spec read before the deploy"
        )
        was_complete = is_complete(snapshot.deployment)
        if not was_complete and champion is not None and snapshot.version != champion:
            # the spec read before was an unfinished rollout: the champion is the known-good target
            target = render_deployment(
                model_name, champion, self.config, replicas=snapshot.deployment.get("spec", {}).get("replicas")
            )
            what = (
                f"the champion's Deployment (revision {snapshot.revision}, version {snapshot.version}, "
                "had not finished rolling out)"
            )
        target_version = deployment_version(target)
        log.warning("rolling back %s/%s to %s (version %s)", self.namespace, name, what, target_version)
        try:
            restored = self.objects.restore(DEPLOYMENT, name, target)
            for kind in (SERVICE, HPA):
                self.objects.restore(kind, name, snapshot.get(kind))
            self._wait_for_rollout(name, target_version)
        except Exception as exc:
            return (
                f"the rollback to {what} ({model_name} version {target_version}) failed too: "
                f"{type(exc).__name__}: {exc}; the endpoint may be down, inspect with "
                f"kubectl -n {self.namespace} rollout status deployment/{name}"
            )
        try:
            current = self.objects.read(DEPLOYMENT, name) or restored or {}
        except Exception as exc:  # only the revision number is lost: the rollout itself completed
            log.info("could not read the restored Deployment back: %s", exc)
            current = restored or {}
        revision = (current.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
        served = self._settle(url, target_version)
        recorded = f" (Kubernetes recorded it as revision {revision})" if revision else ""
        answer = (
            f"{url}/health reports version {served}"
            if served == target_version
            else f"but {url}/health reports version {served}, not {target_version}"
        )
        return f"{what} was re-applied{recorded}: {model_name} version {target_version} is served, {answer}"

    # ------------------------------------------------------------------- waits

    def _wait_for_rollout(self, name: str, version: str | None) -> str:
        return wait_for_rollout(
            lambda: self.objects.read_status(name),
            version,
            timeout=self.rollout_timeout,
            poll_interval=self.poll_interval,
            sleep=self._sleep,
            diagnose=lambda: self._pod_problems(name, version),
        )

    def _pod_problems(self, name: str, version: str | None) -> str:
        """Why the new pods are not ready, as their containers report it (best effort, for the error message)."""
        try:
            pods = self.objects.list_pods(pods_label_selector(name, version))
        except Exception as exc:  # the message is a courtesy: never let it hide the real failure
            log.info("could not list the pods of %s: %s", name, exc)
            return ""
        return pod_problems(pods)

    def _settle(
        self, url: str, version: str | None, in_a_row: int = 3, read: Callable[[str], str | None] | None = None
    ) -> str | None:
        """Wait until /health through the Service reports ``version`` ``in_a_row`` times (``read(url)`` reads
        what it reports; default: the served version); the last answer."""
        streak, reported = 0, None

        def settled() -> bool:
            nonlocal streak, reported
            if read is not None:
                reported = read(url)
            else:
                reported = served_version(self._session, url, timeout=min(2.0, self.request_timeout))
            streak = streak + 1 if reported == version else 0
            return streak >= in_a_row

        # not settled in time is no failure here: the smoke test then reports what the Service answers
        with contextlib.suppress(TimeoutError):
            wait_until(settled, self.settle_timeout, min(self.poll_interval, 1.0), sleep=self._sleep)
        return reported
