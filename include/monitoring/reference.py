"""The drift check's reference: the rows the current champion learned from, with its predictions on them.

The champion is found through the registry alias, its data through its lineage tags
(``data.*``, written when it was registered), and the data itself through the DVC
remote. The champion then predicts on its own training rows, so that prediction drift
compares like with like, and scores the snapshot's held-out rows, which is what the
window's score is compared with. Also here: the names of the columns the check
reads, shared by the window checks and the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd

# re-exported with the drift check's public names
from include.data.versioning import LINEAGE_TAGS as LINEAGE_TAGS

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

log = logging.getLogger(__name__)

PROBABILITY_COLUMN = "probability"
PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"


class DriftReferenceError(RuntimeError):
    """No reference can be built: no champion, or its lineage tags do not lead to its data."""


@dataclass
class Reference:
    """What the champion learned from: typed feature columns, its prediction column and ``label`` per row.

    ``model_version`` is the champion's registry version; ``data_ref`` the
    :class:`~include.data.versioning.DatasetRef` of its snapshot as a dict (``repo``,
    ``path``, ``md5``, ``rev``, ``rows``, ``window_start``, ``window_end``);
    ``holdout_score`` the champion's ``metric`` on the snapshot's held-out rows (None
    when the metric is undefined there). ``columns`` maps a column to its
    :class:`~include.monitoring.columns.ColumnReference` and ``calibrator`` is the
    champion's CBPE calibration; both come from the champion's stored monitoring
    profile (:mod:`include.monitoring.profile`).
    """

    frame: pd.DataFrame = field(repr=False)
    model_version: str
    data_ref: dict[str, Any]
    holdout_score: float | None
    metric: str = "roc_auc"
    # what the reference fixes per column (null distributions...): computed on first use when absent
    columns: dict[str, Any] = field(default_factory=dict, repr=False)
    # the champion's CBPE calibration (binary models): None when there is none
    calibrator: dict[str, Any] | None = field(default=None, repr=False)
    # the champion's ROC AUC on the held-out rows, CBPE's baseline (binary models)
    holdout_roc_auc: float | None = None
    holdout_probabilities: Any = field(default=None, repr=False)
    holdout_labels: Any = field(default=None, repr=False)


def prediction_column(spec: DatasetSpec) -> str:
    """The output column whose drift is prediction drift: ``probability`` (binary), ``prediction``
    (the class of a multiclass model, the value of a regression one). Raises nothing."""
    return PROBABILITY_COLUMN if spec.task == "binary" else PREDICTION_COLUMN


def _prediction_is_numeric(spec: DatasetSpec) -> bool:
    return spec.task != "multiclass"


def window_days_of(data_ref: dict[str, Any]) -> int | None:
    """How many days a snapshot's data reference (``window_start``, ``window_end``: ISO dates) spans,
    or None when it does not say."""
    try:
        return (
            date.fromisoformat(str(data_ref["window_end"])) - date.fromisoformat(str(data_ref["window_start"]))
        ).days
    except (KeyError, TypeError, ValueError):
        return None


def champion_version(settings: Settings) -> str:
    """The registry version behind the ``champion`` alias of ``settings.model_name``, as str.

    Raises :class:`DriftReferenceError` when there is no champion; MLflow's errors pass through.
    """
    from include import registry, tracking

    tracking.configure(settings)
    version = registry.alias_version(settings.model_name, registry.CHAMPION)
    if version is None:
        raise DriftReferenceError(
            f"model {settings.model_name!r} has no {registry.CHAMPION!r} alias in the registry at "
            f"{settings.tracking_uri}: there is no deployed model to compare traffic with"
        )
    return str(version)


def build_reference(settings: Settings, spec: DatasetSpec, version: str) -> Reference:
    """Version ``version``'s training rows with its predictions on them, read back through its lineage tags.

    ``holdout_score`` (the spec's ``gate.metric``) is *computed* here (the model
    scoring the snapshot's held-out rows) rather than read from the version's
    ``gate.challenger_score`` tag: a version registered outside the pipeline has no
    gate tag, and computing it guarantees the same model, the same rows and the
    same metric as the window's score it is compared with.

    Returns a :class:`Reference` whose ``frame`` has the feature columns (as the model
    takes them), the prediction column (:func:`prediction_column`) and ``label`` (the
    target typed for the task), one row per training row of the snapshot; a binary
    model's held-out probabilities and labels ride along for its CBPE calibration.
    Raises :class:`DriftReferenceError` when the lineage tags are missing or
    malformed, or the snapshot lacks the target column;
    :class:`~include.data.versioning.DataVersionError` when the snapshot cannot be
    read; MLflow's errors when the model cannot be loaded.
    """
    import mlflow

    from include import registry, tracking
    from include.data.cast import target_array
    from include.data.split import holdout_split
    from include.data.versioning import DataRegistry, DatasetRef, LineageError
    from include.evaluation.metrics import score
    from include.training.model import as_model_input

    tracking.configure(settings)
    model_name = settings.model_name
    try:
        ref = DatasetRef.from_tags(registry.version_tags(model_name, version))
    except LineageError as exc:
        raise DriftReferenceError(f"model {model_name} version {version} {exc}") from None
    snapshot = DataRegistry(ref.repo, settings.dvc_remote).load(ref)
    if spec.target not in snapshot.columns:
        raise DriftReferenceError(f"the snapshot {ref.describe()} of version {version} has no target {spec.target!r}")
    train, holdout = holdout_split(snapshot, spec)

    model = mlflow.pyfunc.load_model(registry.model_uri(model_name, version))
    features = as_model_input(train, spec)
    predicted = model.predict(features)[prediction_column(spec)].to_numpy()
    holdout_output = model.predict(as_model_input(holdout, spec))
    holdout_labels = target_array(holdout[spec.target], spec)
    holdout_scores = score(
        spec.task,
        holdout_labels,
        {name: holdout_output[name].to_numpy() for name in holdout_output.columns},
        spec.classes,
    )
    metric = spec.gate.metric

    frame = features.reset_index(drop=True)
    frame[prediction_column(spec)] = predicted
    frame[LABEL_COLUMN] = target_array(train[spec.target], spec)
    log.info(
        "reference: %s version %s, %d training rows of %s, held-out %s %s",
        model_name,
        version,
        len(frame),
        ref.describe(),
        metric,
        holdout_scores.get(metric),
    )
    binary = spec.task == "binary"
    return Reference(
        frame=frame,
        model_version=str(version),
        data_ref=ref.to_dict(),
        holdout_score=holdout_scores.get(metric),
        metric=metric,
        holdout_roc_auc=holdout_scores.get("roc_auc") if binary else None,
        holdout_probabilities=holdout_output[PROBABILITY_COLUMN].to_numpy() if binary else None,
        holdout_labels=holdout_labels if binary else None,
    )


def reference_for_champion(settings: Settings, spec: DatasetSpec) -> Reference:
    """The champion's reference with its monitoring profile: read from the profile stored with the
    version (:func:`include.monitoring.profile.load_profile`), built and stored first when it has none.

    Returns a :class:`Reference`. Raises :class:`DriftReferenceError` when there is no champion or
    its lineage does not lead to its data, and what :func:`build_reference` raises.
    """
    from include.monitoring.profile import load_or_build

    return load_or_build(settings, spec, champion_version(settings))
