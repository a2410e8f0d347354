"""Waiting for a Deployment's rollout, and saying why it is stuck (kubernetes profile).

:func:`rollout_state` reads a Deployment as ``kubectl rollout status`` does: the
controller observed the new generation, every replica is updated and available, and
no old replica is left; a ``ProgressDeadlineExceeded`` condition fails at once.
:func:`wait_for_rollout` polls it until the rollout completes or its time is up, and
a failure carries what the new pods report (:func:`pod_problems`: image pull errors,
crash loops, pods that cannot be scheduled), so the deploy's error says what to fix.

Nothing here talks to the API itself: the deployer passes the reads in, so this
module is plain logic over the API's JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from include.deployment.k8s_manifests import MODEL_VERSION_LABEL, pod_selector
from include.util.wait import wait_until

_POD_WAITING_SHOWN = 3


class RolloutFailed(RuntimeError):
    """The Deployment did not roll out: progress deadline exceeded, or not complete in time."""


def rollout_state(deployment: dict[str, Any]) -> tuple[bool, str]:
    """(complete, what it is waiting for) of a Deployment read from the API, as ``kubectl rollout status``.

    Returns whether the rollout is complete and a sentence on its progress. Raises
    :class:`RolloutFailed` when the controller reports the progress deadline exceeded
    for the generation it observed.
    """
    metadata, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    generation, observed = metadata.get("generation") or 0, status.get("observedGeneration") or 0
    if observed < generation:
        return False, f"the controller has not yet observed generation {generation} (observed {observed})"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"the rollout exceeded its progress deadline: {condition.get('message', '')}".rstrip())
    wanted = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas") or 0, status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {wanted} replicas updated and available"


def is_complete(deployment: dict[str, Any]) -> bool:
    """Whether the Deployment's rollout completed (a bool); False also when it exceeded its progress deadline.

    Never raises :class:`RolloutFailed`.
    """
    try:
        return rollout_state(deployment)[0]
    except RolloutFailed:
        return False


def wait_for_rollout(
    read_status: Callable[[], dict[str, Any]],
    version: str | None,
    *,
    timeout: float,
    poll_interval: float,
    sleep: Callable[[float], None] = time.sleep,
    diagnose: Callable[[], str] = lambda: "",
) -> str:
    """Poll ``read_status`` (the Deployment's status as the API's JSON) until its rollout completes.

    Returns the last progress sentence of :func:`rollout_state`. Raises :class:`RolloutFailed`
    when the progress deadline is exceeded, or the rollout of ``version`` is not complete
    within ``timeout`` seconds; either message ends with what ``diagnose()`` returns (say
    :func:`pod_problems`). What ``read_status`` raises is passed on.
    """
    progress = ""

    def complete() -> bool:
        nonlocal progress
        try:
            done, progress = rollout_state(read_status())
        except RolloutFailed as exc:
            raise RolloutFailed(f"{exc}{diagnose()}") from None
        return done

    def timed_out() -> RolloutFailed:
        return RolloutFailed(
            f"the rollout of version {version} did not complete within {timeout:g}s: {progress}{diagnose()}"
        )

    wait_until(complete, timeout, poll_interval, on_timeout=timed_out, sleep=sleep)
    return progress


def pods_label_selector(name: str, version: str | None) -> str:
    """Returns the label selector (a str, ``key=value,...``) of the pods of the Deployment ``name`` that serve
    ``version`` (any when None)."""
    labels = pod_selector(name) | ({MODEL_VERSION_LABEL: version} if version is not None else {})
    return ",".join(f"{key}={value}" for key, value in labels.items())


def pod_problems(pods: dict[str, Any]) -> str:
    """Why the pods of a pod list (the API's JSON) are not ready, as their containers report it.

    Returns ``"; pods: <pod>: <reason> ..."`` naming the first few problems and how many
    more, or ``""`` when no pod reports one. Never raises on a well-formed list.
    """
    problems = []
    for pod in pods.get("items") or []:
        pod_name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason"):
                problems.append(
                    f"{pod_name}: {waiting['reason']}"
                    + (f" ({waiting['message'][:200]})" if waiting.get("message") else "")
                )
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                problems.append(f"{pod_name}: not scheduled ({condition.get('message', '')[:200]})")
    if not problems:
        return ""
    more = f" and {len(problems) - _POD_WAITING_SHOWN} more" if len(problems) > _POD_WAITING_SHOWN else ""
    return "; pods: " + "; ".join(problems[:_POD_WAITING_SHOWN]) + more
