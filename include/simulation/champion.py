"""A demo champion and the traffic it serves, in memory: what drift checks are tried on outside the pipeline.

The pipeline's champion comes from ``ml_training`` and its reference from its lineage
(:func:`include.monitoring.reference.build_reference`); tests and benchmarks of the drift
check need the same things without MLflow or a data registry:

- :func:`fit_champion`: a gradient-boosted :class:`~include.training.model.TabularClassifier`
  fitted on the train part of generated days (seconds), and its
  :class:`~include.monitoring.reference.Reference` built as ``build_reference`` builds one
  (the model's probabilities on its own training rows, the labels, the held-out ROC AUC);
- :func:`served_window`: generated customers as the inference log returns them once that
  model has scored them and their labels have arrived.

Only the demo's binary schema is supported (:func:`include.simulation.generate.check_spec`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.monitoring.reference import Reference
    from include.training.model import TabularModel


def _data_ref(spec: DatasetSpec, snapshot: pd.DataFrame) -> dict[str, Any]:
    days = pd.to_datetime(snapshot[spec.timestamp_column]).dt.date
    return {
        "repo": "memory",
        "path": f"generated/{spec.name}",
        "md5": "-",
        "rev": "-",
        "rows": len(snapshot),
        "window_start": days.min().isoformat(),
        "window_end": (days.max() + timedelta(days=1)).isoformat(),
    }


def fit_champion(
    spec: DatasetSpec,
    snapshot: pd.DataFrame,
    *,
    model_version: str = "1",
    data_ref: dict[str, Any] | None = None,
    epochs: int = 2,
    learning_rate: float = 0.1,
) -> tuple[TabularModel, Reference]:
    """A ``sklearn_hgb`` classifier fitted on the train part of ``snapshot`` (generated days, e.g.
    :func:`~include.simulation.generate.generate_days`) and the :class:`Reference` of those rows.

    The reference frame holds the model's input columns, its ``probability`` on each training row
    and the ``label``; its ``holdout_score`` is the ROC AUC on the held-out rows
    (:func:`~include.data.split.holdout_split`). ``data_ref`` defaults to one naming the generated
    days (``repo`` ``memory``). Returns ``(model, reference)``. Raises ``ValueError`` for a
    snapshot too small to split and what the model's ``fit`` raises.
    """
    from sklearn.metrics import roc_auc_score

    from include.data.split import holdout_split
    from include.monitoring.reference import Reference
    from include.training.model import TabularClassifier, as_model_input
    from include.training.preprocessing import TabularPreprocessor

    train, holdout = holdout_split(snapshot, spec)
    model = TabularClassifier("sklearn_hgb").fit(
        train[spec.feature_names],
        train[spec.target],
        TabularPreprocessor.from_spec(spec),
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=256,
    )
    frame = as_model_input(train, spec)
    frame["probability"] = model.predict_proba(frame)
    frame["label"] = train[spec.target].astype("Int64").to_numpy()
    holdout_auc = float(roc_auc_score(holdout[spec.target], model.predict_proba(as_model_input(holdout, spec))))
    reference = Reference(
        frame=frame,
        model_version=model_version,
        holdout_score=holdout_auc,
        data_ref=data_ref if data_ref is not None else _data_ref(spec, snapshot),
    )
    return model, reference


def served_window(
    spec: DatasetSpec,
    model: TabularModel,
    customers: pd.DataFrame,
    *,
    labelled: int | None = None,
    model_version: str = "1",
) -> pd.DataFrame:
    """``customers`` (generated rows) as the inference log returns them after ``model`` served them:
    request id, timestamp, model name and version, the features, ``probability``, ``prediction`` and
    ``label``; the first ``labelled`` rows carry their label (all of them when None), the others NA.

    Returns a frame with a fresh index, one row per customer. Raises what the model's ``predict_proba`` raises.
    """
    from include.training.model import as_model_input

    customers = customers.reset_index(drop=True)
    probability = model.predict_proba(as_model_input(customers, spec))
    labels = customers[spec.target].astype("Int64")
    if labelled is not None:
        labels.iloc[labelled:] = pd.NA
    return pd.DataFrame(
        {
            "request_id": [f"req-{index}" for index in range(len(customers))],
            "timestamp": customers[spec.timestamp_column],
            "model_name": spec.name,
            "model_version": model_version,
            **{name: customers[name] for name in spec.feature_names},
            "probability": probability.astype(np.float64),
            "prediction": (probability >= 0.5).astype(np.int64),
            "label": labels,
        }
    )
