"""Model registry operations: versions, lineage tags and aliases.

Promotion uses aliases only (``challenger``, ``champion``, ``previous_champion``),
never the deprecated stages. ``champion`` moves only through :func:`promote_champion`,
which the deploy step calls after the served model answered its smoke test.
"""
from __future__ import annotations

from typing import Mapping

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"


def _client():
    import mlflow

    return mlflow.MlflowClient()


def alias_version(model_name: str, alias: str) -> str | None:
    """The version number behind ``alias``, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def model_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def register_challenger(model_name: str, source_uri: str, source_run_id: str,
                        tags: Mapping[str, object]) -> str:
    """Register ``source_uri`` as a new version, tag it and point ``challenger`` at it.

    Idempotent: a retry of the same training run finds the version it already
    registered (by run id) instead of creating a second one.
    """
    import mlflow

    client = _client()
    existing = [v for v in client.search_model_versions(f"name='{model_name}'") if v.run_id == source_run_id]
    if existing:
        version = str(existing[0].version)
    else:
        # MLflow hands versions back as int or str depending on the store: always str here
        version = str(mlflow.register_model(source_uri, model_name).version)
    set_version_tags(model_name, version, tags)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return version


def set_version_tags(model_name: str, version: str, tags: Mapping[str, object]) -> None:
    client = _client()
    for key, value in tags.items():
        # booleans as "true"/"false", the way the gate writes its own tags
        client.set_model_version_tag(model_name, version, key, str(value).lower() if isinstance(value, bool) else str(value))


def version_tags(model_name: str, version: str) -> dict[str, str]:
    return dict(_client().get_model_version(model_name, version).tags)


def promote_champion(model_name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``; the version it leaves keeps ``previous_champion``.

    Returns the previous champion's version (None on the first promotion).
    """
    client = _client()
    version = str(version)
    previous = alias_version(model_name, CHAMPION)
    if previous == str(version):
        return client.get_model_version(model_name, version).tags.get("previous_champion_version") or None
    if previous is not None:
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, previous)
    client.set_model_version_tag(model_name, version, "previous_champion_version", previous or "none")
    client.set_registered_model_alias(model_name, CHAMPION, version)
    return previous
