"""Every serving manifest of one deploy, for the tests that check them all at once."""

from __future__ import annotations

from typing import Any

from include.deployment.k8s_manifests import render_deployment, render_hpa, render_service
from include.deployment.serving_config import ServingConfig


def render_all(model_name: str, version: str, config: ServingConfig) -> list[dict[str, Any]]:
    """Deployment, Service and (when autoscaling is on) HPA, in the order the deployer applies them."""
    manifests = [render_deployment(model_name, version, config), render_service(model_name, config)]
    hpa = render_hpa(model_name, config)
    return manifests + ([hpa] if hpa is not None else [])
