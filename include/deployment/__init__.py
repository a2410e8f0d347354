"""The deploy step: put a model version behind the serving endpoint, check it, promote it.

Each profile has its own :class:`Deployer`; the DAG only calls ``deploy`` and passes
the :class:`DeployResult` on (``dataclasses.asdict`` makes it XCom-ready).
``champion`` moves only inside ``deploy``, after the endpoint answered its smoke test;
any failure restores the previous champion and raises :class:`DeployFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from include.settings import Settings


@dataclass(frozen=True)
class SmokeResult:
    version: str
    url: str
    rows: int
    checks: tuple[str, ...]
    latency_ms: float


@dataclass(frozen=True)
class DeployResult:
    version: str
    previous_champion: str | None
    url: str
    smoke: SmokeResult


class SmokeTestFailed(RuntimeError):
    def __init__(self, version: str, failures: list[str]):
        self.version = version
        self.failures = tuple(failures)
        super().__init__(f"smoke test of version {version} failed: " + "; ".join(failures))


class DeployFailed(RuntimeError):
    """The deploy did not happen; ``served_now`` says what the endpoint serves after the rollback."""

    def __init__(self, model_name: str, version: str, stage: str, reason: str, served_now: str):
        self.model_name = model_name
        self.version = version
        self.stage = stage
        self.reason = reason
        self.served_now = served_now
        super().__init__(
            f"deploy of {model_name} version {version} failed while {stage}: {reason.rstrip('.')}. "
            f"The champion alias was not moved; {served_now}"
        )


class Deployer(Protocol):
    def deploy(
        self, model_name: str, version: str, sample: pd.DataFrame, expected: np.ndarray | None = None
    ) -> DeployResult:
        """Serve ``version``, smoke-test it, then move ``champion``; on failure restore the champion.

        Returns a :class:`DeployResult`; raises :class:`DeployFailed` naming the failed stage.
        """
        ...


def deployer_for(settings: Settings, kubernetes_client: Any = None) -> Deployer:
    """The profile's deployer. The kubernetes profile needs ``kubernetes_client``, a
    ``kubernetes.client.ApiClient`` (in an Airflow task: ``KubernetesHook(conn_id).get_conn()``).

    Returns a :class:`Deployer`. Raises ``ValueError`` for the kubernetes profile without a client,
    or for a profile that has no deployer.
    """
    if settings.profile == "local":
        from include.deployment.local import LocalServingDeployer

        return LocalServingDeployer(settings)
    if settings.profile == "kubernetes":
        if kubernetes_client is None:
            raise ValueError(
                "the kubernetes profile deploys through the Kubernetes API and needs a client: "
                "deployer_for(settings, kubernetes_client=KubernetesHook(conn_id).get_conn())"
            )
        from include.deployment.kubernetes import KubernetesDeployer

        return KubernetesDeployer(settings, kubernetes_client)
    raise ValueError(f"no deployer for profile {settings.profile!r}")


def promote(model_name: str, version: str, champion: str | None) -> str | None:
    """Make ``version`` champion after its smoke test; returns the champion it replaced.

    ``champion`` is the champion this deploy started from: the alias moves only from it,
    so a concurrent move fails the deploy and is never lost.
    """
    from include.registry import promote_champion, version_tags

    if champion == version:
        # a re-deploy of the champion moves nothing; report the champion it replaced back then
        recorded = version_tags(model_name, version).get("previous_champion_version")
        return None if recorded in (None, "", "none") else recorded
    previous = promote_champion(model_name, version, expected_champion=champion)
    return None if previous is None else str(previous)
