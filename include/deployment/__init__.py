"""The deploy step: put a model version behind the serving endpoint, check it, promote it.

Each profile has its own :class:`Deployer`; the DAG only calls ``deploy`` and passes
the :class:`DeployResult` on (``dataclasses.asdict`` makes it XCom-ready).
``deploy`` is one sequence for both profiles: ``champion`` moves only after the endpoint
answered its smoke test, and any failure restores the previous champion and raises
:class:`DeployFailed`; each profile supplies how to serve a version and how to revert.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import requests

    from include.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeResult:
    """A passed smoke test: the ``version`` and ``url`` it reached, the ``rows`` it sent, the ``checks``
    it made and the answer's ``latency_ms``."""

    version: str
    url: str
    rows: int
    checks: tuple[str, ...]
    latency_ms: float


@dataclass(frozen=True)
class DeployResult:
    """A finished deploy: the ``version`` now served, the ``previous_champion`` (None on the first
    deploy) and the serving ``url``."""

    version: str
    previous_champion: str | None
    url: str
    smoke: SmokeResult


class SmokeTestFailed(RuntimeError):
    """The served ``version`` answered the smoke test wrongly; ``failures`` says how, one line each."""

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


@dataclass
class Stage:
    """What a deploy is doing now (``name``, e.g. ``"running the smoke test"``): the stage a failure names."""

    name: str


class Deployer:
    """A profile's deploy step. :meth:`deploy` is one sequence for every profile; a profile supplies the steps.

    ``_current`` reads what is served before anything changes, ``_roll_out`` serves the
    version, ``_revert`` puts back what was served; ``_exclusive`` may hold a lock for the
    whole deploy and ``_smoke`` may wait for the endpoint before the shared smoke test.
    A subclass sets ``settings`` and ``request_timeout``.
    """

    settings: Settings
    request_timeout: float

    def deploy(
        self,
        model_name: str,
        version: str,
        sample: pd.DataFrame,
        expected: np.ndarray | None = None,
        tolerance: float = 1e-6,
    ) -> DeployResult:
        """Serve ``version``, smoke-test it, then move ``champion`` to it.

        On any failure what was served before is served again, the aliases are left as
        they were, and :class:`DeployFailed` says which stage failed, why, and what is
        served now. Returns a :class:`DeployResult`. Raises ``ValueError`` for a malformed
        version and :class:`DeployFailed` for everything else.
        """
        from include.registry import CHAMPION, alias_version, validate_version
        from include.tracking import configure

        version = validate_version(version)
        configure(self.settings)
        with self._exclusive():
            champion = alias_version(model_name, CHAMPION)
            # the registry store returns versions as int: compare and report them as strings
            champion = None if champion is None else str(champion)
            before = self._current(model_name, version, champion)
            stage = Stage("serving the version")
            try:
                url = self._roll_out(model_name, version, before, stage)
                stage.name = "running the smoke test"
                smoke = self._smoke(url, version, sample, expected, tolerance)
                stage.name = "moving the champion alias"
                previous_champion = promote(model_name, version, champion)
            except Exception as exc:
                log.error("deploy of %s version %s failed while %s: %s", model_name, version, stage.name, exc)
                served_now = self._revert(model_name, champion, before)
                raise DeployFailed(model_name, version, stage.name, f"{type(exc).__name__}: {exc}", served_now) from exc
            return DeployResult(version=version, previous_champion=previous_champion, url=url, smoke=smoke)

    def _exclusive(self) -> AbstractContextManager[None]:
        """Held for the whole deploy; no lock unless the profile needs one."""
        return nullcontext()

    def _current(self, model_name: str, version: str, champion: str | None) -> Any:
        """What is served before the deploy changes anything, as ``_revert`` needs it back.

        Raises :class:`DeployFailed` when it cannot be read (nothing has changed yet).
        """
        raise NotImplementedError

    def _roll_out(self, model_name: str, version: str, before: Any, stage: Stage) -> str:
        """Serve ``version`` (naming each step in ``stage``); returns the URL the smoke test reaches it at."""
        raise NotImplementedError

    def _smoke(
        self, url: str, version: str, sample: pd.DataFrame, expected: np.ndarray | None, tolerance: float
    ) -> SmokeResult:
        """The shared smoke test against ``url`` (:func:`include.deployment.smoke.smoke_test`): a :class:`SmokeResult`.

        Raises :class:`SmokeTestFailed` listing every failed check.
        """
        from include.deployment.smoke import smoke_test

        return smoke_test(
            url, version, sample, expected, tolerance, session=self._session, request_timeout=self.request_timeout
        )

    def _revert(self, model_name: str, champion: str | None, before: Any) -> str:
        """Serve ``champion`` (or what ``before`` served) again; returns what is served now, for
        :class:`DeployFailed`. Never raises: a failed revert is what it returns."""
        raise NotImplementedError

    @cached_property
    def _session(self) -> requests.Session:
        """One HTTP session for the deployer's requests (keep-alive), proxies from the environment ignored."""
        from include.deployment.smoke import new_session

        return new_session()


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
