"""A champion's monitoring profile: what the nightly drift check needs from the training data, computed once.

Building the drift check's reference reads the version's DVC snapshot, loads the
model and predicts on every training row; calibrating its verdicts draws each
column's null distribution at every window size; estimating performance before
labels needs the model's calibration on its held-out rows. None of it changes
while the version is champion, so it is done once, when the version is deployed
(:func:`store_profile`), and stored with the version as MLflow artifacts of its
run, under ``monitoring/``:

- ``reference.parquet``: the training rows' features, the model's prediction
  column and the label, as the drift check compares them;
- ``profile.json``: the version, its data reference, its held-out score, each
  column's :class:`~include.monitoring.columns.ColumnReference` and the CBPE
  calibration (binary models).

The version carries the tag ``monitoring.profile`` once the profile is stored. A
champion without one (registered before, or promoted outside the pipeline) gets
its profile built and stored by the first drift check that needs it
(:func:`load_or_build`). A column whose spec settings changed since (another
method) is calibrated again on the fly, and nothing is stored for it.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring import columns as drift_columns
from include.monitoring.reference import (
    PROBABILITY_COLUMN,
    Reference,
    _prediction_is_numeric,
    build_reference,
    prediction_column,
)
from include.util import fields as read

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

log = logging.getLogger(__name__)

PROFILE_ARTIFACT_PATH = "monitoring"
PROFILE_JSON = "profile.json"
REFERENCE_PARQUET = "reference.parquet"
PROFILE_TAG = "monitoring.profile"
PROFILE_FORMAT = "1"


def calibrate(reference: Reference, spec: DatasetSpec) -> Reference:
    """Fill in what ``reference`` lacks of its profile, in place, and return it: a
    :class:`~include.monitoring.columns.ColumnReference` for every monitored column without one of
    the planned method, and a binary model's CBPE calibration when its held-out predictions are known.

    Raises :class:`~include.monitoring.drift_stats.EmptyColumnError` for a reference column without a
    value; ``ValueError`` from the CBPE fit (e.g. held-out labels of one class).
    """
    plans = drift_columns.plan_columns(spec, prediction_column(spec), _prediction_is_numeric(spec))
    for name, plan in plans.items():
        known = reference.columns.get(name)
        # a column now calibrated that was judged at a fixed threshold before has no null yet
        unusable = known is None or known.method != plan.method
        if unusable or (plan.threshold is None and known.null is None and known.constant is None):
            reference.columns[name] = drift_columns.reference_column(plan, reference.frame[name])
    if reference.calibrator is None and reference.holdout_probabilities is not None:
        from include.monitoring.cbpe import CBPEstimator

        reference.calibrator = CBPEstimator.fit(reference.holdout_probabilities, reference.holdout_labels).to_dict()
    return reference


def _run_id(settings: Settings, version: str) -> str:
    from include import registry

    return registry.version_run_id(settings.model_name, version)


def profile_dict(reference: Reference) -> dict[str, Any]:
    """``profile.json``'s content: a JSON-ready dict with ``format``, ``model_version``, ``data_ref``,
    ``metric``, ``holdout_score``, ``holdout_roc_auc``, ``columns`` (column -> ColumnReference dict) and
    ``calibrator`` (dict or None). Raises nothing."""
    return {
        "format": PROFILE_FORMAT,
        "model_version": reference.model_version,
        "data_ref": reference.data_ref,
        "metric": reference.metric,
        "holdout_score": reference.holdout_score,
        "holdout_roc_auc": reference.holdout_roc_auc,
        "columns": {name: column.to_dict() for name, column in reference.columns.items()},
        "calibrator": reference.calibrator,
    }


def save_profile(settings: Settings, reference: Reference) -> str:
    """Store ``reference``'s profile with its version (artifacts under ``monitoring/`` of the version's
    run), then tag the version; returns the artifact URI. MLflow's errors pass through."""
    import mlflow

    from include import registry

    run_id = _run_id(settings, reference.model_version)
    with tempfile.TemporaryDirectory(prefix="mlops-profile-") as staging:
        reference.frame.to_parquet(Path(staging, REFERENCE_PARQUET), index=False)
        Path(staging, PROFILE_JSON).write_text(json.dumps(profile_dict(reference)))
        mlflow.MlflowClient().log_artifacts(run_id, staging, PROFILE_ARTIFACT_PATH)
    # the tag goes last: a version is only said to have a profile once all of it is stored
    registry.set_version_tags(settings.model_name, reference.model_version, {PROFILE_TAG: PROFILE_FORMAT})
    return f"runs:/{run_id}/{PROFILE_ARTIFACT_PATH}"


def load_profile(settings: Settings, version: str) -> Reference | None:
    """The stored profile of ``version`` as a :class:`Reference`, or None when the version has none.

    Raises ``ValueError`` for a malformed ``profile.json``; MLflow's errors when its artifacts cannot be read.
    """
    import mlflow

    from include import registry, tracking

    tracking.configure(settings)
    if registry.version_tags(settings.model_name, version).get(PROFILE_TAG) != PROFILE_FORMAT:
        return None
    with tempfile.TemporaryDirectory(prefix="mlops-profile-") as staging:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=_run_id(settings, version), artifact_path=PROFILE_ARTIFACT_PATH, dst_path=staging
            )
        )
        frame = pd.read_parquet(local / REFERENCE_PARQUET)
        data = read.mapping(json.loads((local / PROFILE_JSON).read_text()), PROFILE_JSON)
    return Reference(
        frame=frame,
        model_version=read.text(data, "model_version", PROFILE_JSON),
        data_ref=dict(read.mapping(read.key(data, "data_ref", PROFILE_JSON), f"{PROFILE_JSON}.data_ref")),
        holdout_score=read.number(data, "holdout_score", PROFILE_JSON, optional=True),
        metric=read.text(data, "metric", PROFILE_JSON),
        columns={
            name: drift_columns.ColumnReference.from_dict(column, f"{PROFILE_JSON}.columns.{name}")
            for name, column in read.mapping(read.key(data, "columns", PROFILE_JSON), PROFILE_JSON).items()
        },
        calibrator=data.get("calibrator"),
        holdout_roc_auc=read.number(data, "holdout_roc_auc", PROFILE_JSON, optional=True),
    )


def store_profile(settings: Settings, spec: DatasetSpec, version: str) -> Reference:
    """Build ``version``'s reference, calibrate it and store it (see the module's docstring); returns it.

    Raises what :func:`~include.monitoring.reference.build_reference`, :func:`calibrate` and
    :func:`save_profile` raise.
    """
    reference = calibrate(build_reference(settings, spec, version), spec)
    uri = save_profile(settings, reference)
    log.info("monitoring profile of %s version %s stored at %s", settings.model_name, version, uri)
    return reference


def load_or_build(settings: Settings, spec: DatasetSpec, version: str) -> Reference:
    """``version``'s stored profile, calibrated for today's spec; built and stored first when it has none.

    Returns a :class:`Reference`. Raises what :func:`load_profile` and :func:`store_profile` raise.
    """
    reference = load_profile(settings, version)
    if reference is None:
        log.info("%s version %s has no monitoring profile yet: building it", settings.model_name, version)
        return store_profile(settings, spec, version)
    return calibrate(reference, spec)


def estimate_roc_auc(reference: Reference, current: pd.DataFrame):
    """CBPE's estimate of the champion's ROC AUC on the window ``current`` (its ``probability`` column):
    a :class:`~include.monitoring.cbpe.CBPEstimate`, or None for a champion without a calibration (not
    binary), a window without a finite probability, or one whose calibrated probabilities are all 0 or
    all 1. Raises ``ValueError`` for a malformed stored calibration."""
    if reference.calibrator is None or PROBABILITY_COLUMN not in current.columns:
        return None
    from include.monitoring.cbpe import CBPEstimator

    probabilities = pd.to_numeric(current[PROBABILITY_COLUMN], errors="coerce").to_numpy(np.float64)
    probabilities = probabilities[np.isfinite(probabilities)]
    if len(probabilities) == 0:
        return None
    estimate = CBPEstimator.from_dict(reference.calibrator).estimate_with_band(probabilities)
    return estimate if math.isfinite(estimate.roc_auc) else None
