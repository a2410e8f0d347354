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

    from include.deployment.rollout_config import RolloutConfig
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

    # ---------------------------------------------------------------- rollouts

    def start_rollout(
        self,
        model_name: str,
        config: RolloutConfig,
        sample: pd.DataFrame,
        expected: pd.DataFrame | np.ndarray | None = None,
        tolerance: float = 1e-6,
    ) -> str:
        """Serve ``config.candidate_version`` beside the champion (shadow or canary) and smoke-test it.

        The champion keeps answering while the candidate loads. The smoke test sends ``sample``
        with ``X-Score-With: candidate`` (the candidate answers that request alone) and checks its
        predictions equal ``expected`` (the registered model's output frame, numbers within
        ``tolerance``). On any failure the endpoint goes back to the champion alone and
        :class:`DeployFailed` says which stage failed. Moves no alias. Returns the serving URL.
        Raises ``ValueError`` when there is no champion or the candidate is the champion.
        """
        from include.registry import CHAMPION, alias_version
        from include.tracking import configure

        configure(self.settings)
        candidate = config.candidate_version
        with self._exclusive():
            champion = alias_version(model_name, CHAMPION)
            if champion is None:
                raise ValueError(f"{model_name} has no champion: deploy one before a rollout")
            champion = str(champion)
            if champion == candidate:
                raise ValueError(f"version {candidate} is the champion already: a rollout needs another version")
            stage = Stage("serving the candidate beside the champion")
            try:
                url = self._serve_rollout(model_name, champion, config, stage)
                stage.name = "running the candidate's smoke test"
                self._candidate_smoke(url, candidate, sample, expected, tolerance)
            except Exception as exc:
                log.error("rollout of %s version %s failed while %s: %s", model_name, candidate, stage.name, exc)
                try:
                    self._serve_rollout(model_name, champion, None, Stage("ending the rollout"))
                    served_now = f"the champion, version {champion}, is served alone"
                except Exception as revert_exc:
                    served_now = f"ending the rollout failed too ({type(revert_exc).__name__}: {revert_exc})"
                raise DeployFailed(
                    model_name, candidate, stage.name, f"{type(exc).__name__}: {exc}", served_now
                ) from exc
            log.info("rollout of %s version %s (%s) started at %s", model_name, candidate, config.mode, url)
            return url

    def update_rollout(self, model_name: str, config: RolloutConfig) -> None:
        """Change the running rollout (e.g. the next canary step, or shadow to canary) for the same candidate.

        Returns None once the endpoint does what ``config`` says. Raises ``ValueError`` when no
        rollout runs or it runs another candidate; the profile's error when the change fails.
        """
        from include.registry import CHAMPION, alias_version
        from include.tracking import configure

        configure(self.settings)
        with self._exclusive():
            current = self.rollout_status(model_name)
            if current is None or current.candidate_version != config.candidate_version:
                running = (
                    "no rollout runs" if current is None else f"version {current.candidate_version} is rolling out"
                )
                raise ValueError(
                    f"cannot update the rollout of version {config.candidate_version}: {running}; start_rollout first"
                )
            champion = alias_version(model_name, CHAMPION)
            self._serve_rollout(model_name, str(champion), config, Stage("updating the rollout"))

    def end_rollout(self, model_name: str) -> str:
        """Drop the candidate: the champion alone answers again. Returns the version served now (a str).

        Moves no alias (promoting the candidate is :meth:`deploy`). Raises the profile's error when
        the endpoint cannot be changed.
        """
        from include.registry import CHAMPION, alias_version
        from include.tracking import configure

        configure(self.settings)
        with self._exclusive():
            champion = alias_version(model_name, CHAMPION)
            if champion is None:
                raise ValueError(f"{model_name} has no champion to serve alone")
            self._serve_rollout(model_name, str(champion), None, Stage("ending the rollout"))
            return str(champion)

    def rollout_status(self, model_name: str) -> RolloutConfig | None:
        """What the endpoint does now: its :class:`RolloutConfig`, or None when the champion answers alone."""
        raise NotImplementedError

    def metrics_text(self, model_name: str) -> str:
        """The endpoint's ``GET /metrics`` (Prometheus text format, per-version series included).

        Raises :class:`~include.deployment.smoke.EndpointError` when it does not answer, ``RuntimeError``
        for a non-200 answer.
        """
        from include.deployment.smoke import request

        response = request(
            self._session, "GET", f"{self.endpoint_url(model_name)}/metrics", timeout=self.request_timeout
        )
        if response.status_code != 200:
            raise RuntimeError(f"GET /metrics answered HTTP {response.status_code}: {response.text[:200]}")
        return response.text

    def endpoint_url(self, model_name: str) -> str:
        """The base URL the endpoint answers at."""
        raise NotImplementedError

    def _serve_rollout(self, model_name: str, champion: str, config: RolloutConfig | None, stage: Stage) -> str:
        """Make the endpoint serve ``champion`` with ``config`` (None: alone); returns the serving URL."""
        raise NotImplementedError

    def _candidate_smoke(
        self, url: str, candidate: str, sample: pd.DataFrame, expected: Any, tolerance: float
    ) -> SmokeResult:
        from include.deployment.smoke import candidate_smoke_test

        return candidate_smoke_test(
            url, candidate, sample, expected, tolerance, session=self._session, request_timeout=self.request_timeout
        )

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
