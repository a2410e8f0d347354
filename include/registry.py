"""Model registry operations: versions, lineage tags and aliases.

Promotion uses aliases only (``challenger``, ``champion``, ``previous_champion``, and
``candidate`` for the version in a rollout), never the deprecated stages. ``champion`` moves only through :func:`promote_champion`,
which the deploy step calls after the served model answered its smoke test.

Two promotions of one model never interleave: each runs inside
:func:`promotion_lock`, a lock every writer of the registry shares (a PostgreSQL
advisory lock, or a file lock on one machine), and :func:`promote_champion` moves
``champion`` only from the version its caller saw (compare and set), so a
concurrent move is an error, never a lost update.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from include.settings import is_postgres_url, url_scheme

if TYPE_CHECKING:
    from include.settings import Settings

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
# the version in a rollout (shadow or canary), while it runs (see include.rollout)
CANDIDATE = "candidate"
# a deploy holds the lock through its rollout and smoke test, which may take minutes on a cluster
PROMOTION_LOCK_TIMEOUT_S = 1800
_UNSET = object()
# MLflow keeps no history of its aliases: each version records its own periods as champion here
CHAMPION_HISTORY_TAG = "champion.history"
# newest periods kept per version: the tag stays far below the registry's value limit
MAX_CHAMPION_PERIODS = 20
MAX_PERIOD_TEXT_CHARS = 300
UNKNOWN = "unknown"


class ChampionChanged(RuntimeError):
    """``champion`` is no longer the version the caller's decision was based on; nothing was moved."""

    def __init__(self, model_name: str, expected: str | None, actual: str | None):
        self.expected, self.actual = expected, actual
        super().__init__(
            f"champion of {model_name} is version {actual or 'none'}, not version {expected or 'none'} "
            f"as expected: another promotion moved it; nothing was changed"
        )


def _client():
    import mlflow

    return mlflow.MlflowClient()


def alias_version(model_name: str, alias: str) -> str | None:
    """The version number (a str) behind ``alias``, or None when the alias (or the model) does not exist.

    Any other ``MlflowException`` is re-raised.
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def validate_version(version: object) -> str:
    """A registry version number in canonical form: ``"3"`` for ``3``, ``"3"`` or ``" 03 "``.

    Only digits are accepted because the version becomes part of a ``models:/`` URI
    (:func:`model_uri`). Returns the version as a string without leading zeros. Raises
    ``ValueError`` for anything that is not a positive integer or its decimal text
    (a bool, a float, ``"0"``, ``"v3"``, ``"3.0"``, non-ASCII digits).
    """
    is_text_or_number = isinstance(version, (str, int)) and not isinstance(version, bool)
    text = str(version).strip() if is_text_or_number else ""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f'model version must be a positive integer such as "3", got {version!r}')
    return str(int(text))


def model_uri(model_name: str, version: str) -> str:
    """The ``models:/<name>/<version>`` URI (a str) of a registered version."""
    return f"models:/{model_name}/{version}"


def register_challenger(model_name: str, source_uri: str, source_run_id: str, tags: Mapping[str, object]) -> str:
    """Register ``source_uri`` as a new version, tag it and point ``challenger`` at it.

    Idempotent: a retry of the same training run finds the version it already
    registered (by run id) instead of creating a second one. Returns the version as a str;
    MLflow's errors pass through.
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
    """Set ``tags`` on a model version, values as str (bools as ``true``/``false``); MLflow's errors pass through."""
    client = _client()
    for key, value in tags.items():
        # booleans as "true"/"false", the way the gate writes its own tags
        client.set_model_version_tag(
            model_name, version, key, str(value).lower() if isinstance(value, bool) else str(value)
        )


def set_alias(model_name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` (moving it when it points elsewhere); MLflow's errors pass through."""
    _client().set_registered_model_alias(model_name, alias, str(version))


def delete_alias(model_name: str, alias: str) -> None:
    """Remove ``alias``; nothing happens when it does not exist. Other MLflow errors pass through."""
    if alias_version(model_name, alias) is not None:
        _client().delete_registered_model_alias(model_name, alias)


def version_tags(model_name: str, version: str) -> dict[str, str]:
    """The tags of a model version, a dict of str to str; MLflow's errors pass through."""
    return dict(_client().get_model_version(model_name, version).tags)


def version_run_id(model_name: str, version: str) -> str:
    """The id (a str) of the MLflow run that produced a registered version; MLflow's errors pass through."""
    return str(_client().get_model_version(model_name, version).run_id)


def promote_champion(model_name: str, version: str, expected_champion=_UNSET) -> str | None:
    """Move ``champion`` to ``version``; the version it leaves keeps ``previous_champion``.

    With ``expected_champion`` (a version, or None for "no champion yet"), raises
    :class:`ChampionChanged` when the champion is another version by now. Callers hold
    :func:`promotion_lock`, so that nothing moves between this check and the move.

    The move is recorded in the ``champion.history`` tags (:func:`champion_history`): the
    previous champion's open period is closed and ``version`` gets a new one saying how it got
    there (from its tags at this moment, :func:`promotion_cause`) and which Airflow run did it
    (``AIRFLOW_CTX_DAG_ID`` / ``AIRFLOW_CTX_DAG_RUN_ID``, which Airflow sets in a task's process;
    ``unknown`` elsewhere). A promotion repeated after a failure in between completes the record.
    Returns the previous champion's version (None on the first promotion).
    """
    client = _client()
    version = str(version)
    previous = alias_version(model_name, CHAMPION)
    if previous == str(version):
        tags = client.get_model_version(model_name, version).tags
        if not any(period.get("to") is None for period in champion_history(tags)):
            _open_period(client, model_name, version, dict(tags), _now())
        return tags.get("previous_champion_version") or None
    if expected_champion is not _UNSET and previous != (None if expected_champion is None else str(expected_champion)):
        raise ChampionChanged(model_name, expected_champion, previous)
    if previous is not None:
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, previous)
    client.set_model_version_tag(model_name, version, "previous_champion_version", previous or "none")
    client.set_registered_model_alias(model_name, CHAMPION, version)
    # recorded after the move, which is what counts; a retry finds the move done and completes this
    now = _now()
    if previous is not None:
        _close_period(client, model_name, previous, now)
    _open_period(client, model_name, version, dict(client.get_model_version(model_name, version).tags), now)
    return previous


# ---------------------------------------------------------------------- champion history
def champion_history(tags: Mapping[str, str]) -> list[dict[str, str | None]]:
    """A version's periods as champion, oldest first, read from its ``champion.history`` tag.

    Each period is ``{"from": iso, "to": iso | None (still champion), "how": "gate" | "approval"
    | "rollout" | "rollback" | "unknown", "by": str, "reason": str, "dag_id": str, "run_id": str}``
    (times in UTC, ISO 8601). A missing or unreadable tag is an empty list, never an error.
    """
    try:
        periods = json.loads(tags.get(CHAMPION_HISTORY_TAG) or "[]")
    except (TypeError, ValueError):
        return []
    if not isinstance(periods, list):
        return []
    return [period for period in periods if isinstance(period, dict) and isinstance(period.get("from"), str)]


def promotion_cause(tags: Mapping[str, str]) -> dict[str, str]:
    """How a version becomes champion, read from its tags at that moment: ``{"how", "by", "reason"}``.

    ``rollout`` when a rollout decided to promote it (``rollout.decision=promote``), ``approval``
    when a person approved its deploy (``approval.decision=approved``, ``approval.by``), ``gate``
    when its gate passed and nothing else stood in between, ``unknown`` otherwise. A rollback
    amends its period afterwards (:func:`amend_champion_period`), since its audit tags are written
    once the rolled-back-to version serves.
    """
    if tags.get("rollout.decision") == "promote":
        return {"how": "rollout", "by": "rollout controller", "reason": tags.get("rollout.reason", "")}
    if tags.get("approval.decision") == "approved":
        return {"how": "approval", "by": tags.get("approval.by") or UNKNOWN, "reason": tags.get("approval.comment", "")}
    if tags.get("gate.passed") == "true":
        return {"how": "gate", "by": "gate (automatic)", "reason": tags.get("gate.reason", "")}
    return {"how": UNKNOWN, "by": UNKNOWN, "reason": ""}


def amend_champion_period(model_name: str, version: str, **changes: str) -> None:
    """Change fields (``how``, ``by``, ``reason``...) of ``version``'s open period as champion.

    Raises ``ValueError`` when ``version`` has no open period (it is not the recorded champion);
    MLflow's errors pass through.
    """
    client = _client()
    periods = champion_history(client.get_model_version(model_name, version).tags)
    if not periods or periods[-1].get("to") is not None:
        raise ValueError(f"{model_name} version {version} has no open period as champion to amend")
    periods[-1].update({key: _short(value) for key, value in changes.items()})
    _write_history(client, model_name, version, periods)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_PERIOD_TEXT_CHARS else text[: MAX_PERIOD_TEXT_CHARS - 3] + "..."


def _write_history(client, model_name: str, version: str, periods: list[dict]) -> None:
    text = json.dumps(periods[-MAX_CHAMPION_PERIODS:], separators=(",", ":"))
    client.set_model_version_tag(model_name, version, CHAMPION_HISTORY_TAG, text)


def _open_period(client, model_name: str, version: str, tags: dict[str, str], now: str) -> None:
    periods = champion_history(tags)
    for period in periods:
        # a period a failed promotion left open ends where the new one starts
        if period.get("to") is None:
            period["to"] = now
    cause = promotion_cause(tags)
    periods.append(
        {
            "from": now,
            "to": None,
            "how": cause["how"],
            "by": _short(cause["by"]),
            "reason": _short(cause["reason"]),
            "dag_id": os.environ.get("AIRFLOW_CTX_DAG_ID") or UNKNOWN,
            "run_id": os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or UNKNOWN,
        }
    )
    _write_history(client, model_name, version, periods)


def _close_period(client, model_name: str, version: str, now: str) -> None:
    periods = champion_history(client.get_model_version(model_name, version).tags)
    if any(period.get("to") is None for period in periods):
        for period in periods:
            if period.get("to") is None:
                period["to"] = now
        _write_history(client, model_name, version, periods)


# ---------------------------------------------------------------------- promotion lock
_held = threading.local()


@contextmanager
def promotion_lock(settings: Settings, model_name: str, timeout_s: float = PROMOTION_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock that serialises every promotion (and rollback) of ``model_name``; yields None.

    ``settings.promotion_lock`` says where: a PostgreSQL URL takes a session advisory
    lock in that database (every worker that reaches it takes turns, and the lock goes
    when the holder's connection does, even if it is killed); anything else is a file
    locked with ``flock`` (writers on one machine). Re-entrant within a thread. Raises
    ``ValueError`` for a URL of another scheme; ``TimeoutError`` when the lock is not free within ``timeout_s`` seconds.
    """
    held = getattr(_held, "names", None)
    if held is None:
        held = _held.names = {}
    key = (settings.promotion_lock, model_name)
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    target = settings.promotion_lock
    scheme = url_scheme(target)
    if is_postgres_url(target):
        lock = _advisory_lock(target, model_name, timeout_s)
    elif scheme:
        raise ValueError(
            f"MLOPS_PROMOTION_LOCK={_redacted(target)!r}: a PostgreSQL URL or a file path, not a {scheme}:// URL"
        )
    else:
        lock = _file_lock(Path(target), timeout_s)
    with lock:
        held[key] = 1
        try:
            yield
        finally:
            held[key] = 0


def _lock_key(model_name: str) -> int:
    # pg_advisory_lock takes a signed 64-bit key
    return int.from_bytes(hashlib.sha256(f"mlops.promotion:{model_name}".encode()).digest()[:8], "big", signed=True)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


@contextmanager
def _advisory_lock(url: str, model_name: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy as sa
    from sqlalchemy.exc import OperationalError

    # a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1; the project ships psycopg2
    scheme, rest = url.split("://", 1)
    driver_url = f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url
    engine = sa.create_engine(driver_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f"SET lock_timeout = {int(timeout_s * 1000)}"))
            try:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _lock_key(model_name)})
            except OperationalError as exc:
                raise TimeoutError(
                    f"another promotion of {model_name} held the lock in {_redacted(url)} "
                    f"for more than {timeout_s:.0f}s"
                ) from exc
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(model_name)})
    finally:
        engine.dispose()


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise TimeoutError(f"another promotion held {path} for more than {timeout_s:.0f}s") from None
    try:
        yield
    finally:
        lock.release()
