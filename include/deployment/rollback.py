"""Roll the served model back to an earlier version, through the profile's own deployer.

A rollback is a deploy of an older version, with the same guarantees (served,
smoke-tested, then ``champion`` moved by the deployer, which also records
``previous_champion``), plus an audit trail: tags on both versions involved,

==========================  ==============================================================
``rollback.from``           the champion rolled back from
``rollback.to``             the version rolled back to
``rollback.at``             when (UTC, ISO 8601)
``rollback.by``             who asked (a user name, or the DAG that decided it)
``rollback.reason``         why, in words
``rollback.url``            the endpoint that now serves ``rollback.to``
``rollback.airflow_run_id`` the Airflow run that did it, when given
==========================  ==============================================================

The rolled-back-to version's period as champion (``champion.history``, see
:func:`include.registry.champion_history`) says ``how: rollback``, who and why.

A version involved in several rollbacks keeps the tags of the latest one. A failed
rollback (the deployer raised DeployFailed) writes no tags: the aliases and the served
version are what the deployer left, which its error says.

Retrying the same Airflow run is safe: when the champion already carries the tags
of a rollback by that run id, :func:`rollback` returns its record instead of rolling
"previous" back again (which would now mean rolling forward).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.registry import validate_version

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from include.deployment import Deployer
    from include.settings import Settings

log = logging.getLogger(__name__)

PREVIOUS = "previous"
TAG_PREFIX = "rollback."
MAX_REASON_CHARS = 500


class RollbackRefused(ValueError):
    """The rollback target is not a version that can be rolled back to; nothing was changed."""


def resolve_target(model_name: str, target: str) -> str:
    """The version ``target`` names: ``"previous"`` or a version number such as ``"3"``.

    ``"previous"`` is the ``previous_champion`` alias or, failing that, the champion's
    ``previous_champion_version`` tag. A number must be a registered version of
    ``model_name``. Either must differ from the current champion, which must exist.
    Needs the MLflow tracking URI configured (``include.tracking.configure``).
    Returns the version as a str. Raises :class:`RollbackRefused` when any of that does not hold.
    """
    from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version, version_tags

    champion = alias_version(model_name, CHAMPION)
    champion = None if champion is None else str(champion)
    if champion is None:
        raise RollbackRefused(
            f"model {model_name!r} has no champion, so there is nothing to roll back from; deploy a version instead"
        )
    text = str(target).strip()
    if text.lower() == PREVIOUS:
        version = alias_version(model_name, PREVIOUS_CHAMPION)
        if version is None:
            recorded = version_tags(model_name, champion).get("previous_champion_version")
            version = None if recorded in (None, "", "none") else recorded
        if version is None:
            raise RollbackRefused(
                f"model {model_name!r} has no previous champion to roll back to: neither the "
                f"{PREVIOUS_CHAMPION!r} alias nor the previous_champion_version tag of "
                f"champion version {champion} names one; name a version number instead"
            )
        version = str(version)
    else:
        try:
            version = validate_version(text)
        except ValueError:
            raise RollbackRefused(
                f"rollback target {target!r} is neither {PREVIOUS!r} nor a version number such as '3'"
            ) from None
        if not _version_exists(model_name, version):
            raise RollbackRefused(f"model {model_name!r} has no registered version {version} to roll back to")
    if version == champion:
        raise RollbackRefused(
            f"version {version} of {model_name!r} is already the champion; rolling back to it would change nothing"
        )
    return version


def rollback(
    settings: Settings,
    deployer: Deployer,
    model_name: str,
    target: str,
    sample: pd.DataFrame,
    expected: np.ndarray | None,
    actor: str,
    reason: str,
    *,
    airflow_run_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Redeploy the version ``target`` names (see :func:`resolve_target`) through ``deployer``, then tag both.

    ``expected`` are the target version's own answers to ``sample`` (or None to check
    only their shape). Raises RollbackRefused before anything changes, or the
    deployer's DeployFailed. Returns ``{"from", "to", "url"}``.
    """
    from include.registry import CHAMPION, alias_version, amend_champion_period, set_version_tags, version_tags
    from include.tracking import configure

    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor or not reason:
        raise RollbackRefused("a rollback needs an actor (who) and a reason (why) for its audit trail")
    configure(settings)
    champion = alias_version(model_name, CHAMPION)
    champion = None if champion is None else str(champion)
    if airflow_run_id and champion is not None:
        done = version_tags(model_name, champion)
        if done.get(f"{TAG_PREFIX}airflow_run_id") == airflow_run_id and done.get(f"{TAG_PREFIX}to") == champion:
            # this run already rolled back (a retry after the tags were written): report, do not roll again
            return {"from": done.get(f"{TAG_PREFIX}from"), "to": champion, "url": done.get(f"{TAG_PREFIX}url")}
    version = resolve_target(model_name, target)

    result = deployer.deploy(model_name, version, sample, expected)

    when = (at or datetime.now(UTC)).astimezone(UTC)
    tags = {
        f"{TAG_PREFIX}from": champion,
        f"{TAG_PREFIX}to": version,
        f"{TAG_PREFIX}at": when.isoformat(timespec="seconds"),
        f"{TAG_PREFIX}by": actor,
        f"{TAG_PREFIX}reason": reason[:MAX_REASON_CHARS],
        f"{TAG_PREFIX}url": result.url,
    }
    if airflow_run_id:
        tags[f"{TAG_PREFIX}airflow_run_id"] = airflow_run_id
    for tagged in (champion, version):
        set_version_tags(model_name, tagged, tags)
        if not airflow_run_id:
            # a tag from an earlier rollback's run would make this one look like that run's
            _delete_tag(model_name, tagged, f"{TAG_PREFIX}airflow_run_id")
    try:
        amend_champion_period(model_name, version, how="rollback", by=actor, reason=reason)
    except ValueError as exc:
        # a deployer that moved the alias without recording it: the audit tags above still say it all
        log.warning("rollback to %s version %s not recorded in its champion history: %s", model_name, version, exc)
    return {"from": champion, "to": version, "url": result.url}


def _version_exists(model_name: str, version: str) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().get_model_version(model_name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False
        raise
    return True


def _delete_tag(model_name: str, version: str, key: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().delete_model_version_tag(model_name, version, key)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
