"""The served model: loading one registered version, its direct predictor, and the check
every model output passes before it is answered.

Outputs
    A model answers one record per row with every output column
    (:func:`include.training.model.output_columns`): ``{"probability", "prediction"}``
    for a binary model (P(positive class), label 0/1); ``{"prediction", "probability",
    "probability_<class>"...}`` for a multiclass one (the class name, its probability,
    then every class's); ``{"prediction"}`` for a regression one. Another pyfunc's
    output frame is answered column for column (``prediction``, ``probability`` and
    ``probability_<class>``; other columns are left out), once checked: one row per
    input row, finite numbers, probabilities in [0, 1], and a label in {0, 1} when
    it has the binary shape (``probability`` without ``probability_<class>``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from include.registry import model_uri
from include.serving.request import FeatureColumn, feature_columns, nullable_features
from include.training import PROBABILITY_PREFIX
from include.util.text import rows_text

PROBABILITY = "probability"
PREDICTION = "prediction"

# the output columns, in order (one array each, one value per row), for a mapping of typed columns
DirectPredictor = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ServedModel:
    """One loaded version. Replaced as a whole on reload, never mutated, so a request
    that picked it up keeps a consistent model even while a reload swaps in another.

    ``columns`` is the signature the server checks requests against (None: no column
    signature, the request's values go to the pyfunc as sent).
    ``direct`` is set when the version is the project's own model
    (:class:`~include.training.model.TabularModel`, any task) and the server checks and
    types every column of its signature itself: the model's ``predict_columns`` is then
    called on the typed columns, without the pyfunc wrapper's DataFrame and schema
    enforcement (which would repeat those checks and cost more than the prediction),
    and, since it predicts every row independently of the others, concurrent requests
    may share one call (:class:`~include.serving.batching.MicroBatcher`). Its columns
    are then ``nullable``: the model answers a missing value as it does on the cast frame.
    """

    name: str
    version: str
    pyfunc: Any
    columns: tuple[FeatureColumn, ...] | None
    direct: DirectPredictor | None = None


def direct_predictor(pyfunc_model, columns: tuple[FeatureColumn, ...] | None) -> DirectPredictor | None:
    """The project model's own ``predict_columns`` for ``pyfunc_model``, or None when the pyfunc path must be used.

    The predictor takes a mapping of typed columns (one array per signature column,
    one value per row) and returns the output columns (:data:`PREDICTION`, and the
    probabilities of a classifier) as arrays of one value per row. None when the
    model is not a fitted :class:`~include.training.model.TabularModel`, or when
    ``columns`` leaves a column unchecked (no signature, an ``other`` type or an
    optional column). Raises nothing of its own.
    """
    if columns is None or any(column.kind == "other" or not column.required for column in columns):
        return None  # a column the server does not fully check is left to MLflow's schema enforcement
    try:
        python_model = pyfunc_model.unwrap_python_model()
    except Exception:  # not a PythonModel pyfunc: MLflow raises for other flavors
        return None
    from include.training.model import TabularModel

    if not isinstance(python_model, TabularModel) or not python_model.is_fitted:
        return None
    return python_model.predict_columns


def load_served_model(model_name: str, version: str, tracking_uri: str) -> ServedModel:
    """``models:/<model_name>/<version>`` loaded from the registry at ``tracking_uri``, ready to answer.

    Sets MLflow's tracking and registry URI of this process to ``tracking_uri``.
    Raises whatever MLflow raises when the version cannot be found or loaded
    (``MlflowException``, ``OSError``, or the model's own ``load_context`` error).
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pyfunc_model = mlflow.pyfunc.load_model(model_uri(model_name, version))
    columns = feature_columns(pyfunc_model)
    direct = direct_predictor(pyfunc_model, columns)
    if direct is not None and nullable_features(pyfunc_model) is None:
        # a version logged without the spec's null policy: the project's preprocessor imputes a
        # missing number and encodes a missing category as none of them, so null is answered in
        # every feature, as the registered model answers it
        columns = tuple(replace(column, nullable=True) for column in columns)
    return ServedModel(model_name, version, pyfunc_model, columns, direct)


class InvalidModelOutput(ValueError):
    """The model answered, but not with one well-formed value per output column and row."""


def checked_output(output: Any, rows: int) -> Mapping[str, np.ndarray]:
    """The output columns of a model's answer for ``rows`` rows, each one array of ``rows`` values.

    ``output`` is what a direct predictor returns (a mapping of arrays, returned as it
    is once checked) or what a pyfunc returns (a DataFrame: its ``probability``,
    ``prediction`` and ``probability_<class>`` columns are kept, in its order, as
    float64 probabilities and a ``prediction`` of int64 labels, float64 values or
    object class names; its other columns are left out).

    Raises :class:`InvalidModelOutput` (a ``ValueError``) when there is no
    ``prediction`` column or not one value per row, a probability is not finite in
    [0, 1], a binary-shaped output (``probability`` without ``probability_<class>``)
    has a label other than 0/1, a regression value is not finite, or a class name is
    not a string. A pyfunc column that cannot be typed at all raises ``ValueError``.
    """
    columns = output if isinstance(output, Mapping) else _frame_columns(output, rows)
    if PREDICTION not in columns:
        raise InvalidModelOutput(f"the model output lacks the column {PREDICTION!r}")
    for name, values in columns.items():
        if len(values) != rows:
            raise InvalidModelOutput(f"the model returned {len(values)} predictions for {rows} rows")
        if name == PREDICTION:
            continue
        within = (values >= 0) & (values <= 1)  # False for NaN
        if not within.all():
            bad = np.flatnonzero(~within).tolist()
            raise InvalidModelOutput(
                f"the model returned probabilities not finite in [0, 1] in column {name!r}, "
                f"rows {rows_text(bad)} (e.g. {values[bad[0]]!r})"
            )
    predictions = columns[PREDICTION]
    kind = predictions.dtype.kind
    if _is_binary_shape(columns):
        if kind not in "iub":
            raise InvalidModelOutput(
                f"the model's 'prediction' column holds {predictions.dtype} values, not integer labels"
            )
        if not ((predictions == 0) | (predictions == 1)).all():
            bad = np.flatnonzero((predictions != 0) & (predictions != 1)).tolist()
            raise InvalidModelOutput(
                f"the model returned predictions not in {{0, 1}} in rows {rows_text(bad)} "
                f"(e.g. {predictions[bad[0]]!r})"
            )
    elif kind == "f":
        if not np.isfinite(predictions).all():
            raise InvalidModelOutput("the model returned non-finite predictions (NaN or infinity)")
    elif kind == "O":
        if not all(type(value) is str for value in predictions.tolist()):
            raise InvalidModelOutput("the model's 'prediction' column holds values that are not class names")
    elif kind not in "iu":
        raise InvalidModelOutput(f"the model's 'prediction' column holds {predictions.dtype} values")
    return columns


def _is_output_column(name: Any) -> bool:
    return name in (PROBABILITY, PREDICTION) or (
        isinstance(name, str) and name.startswith(PROBABILITY_PREFIX) and len(name) > len(PROBABILITY_PREFIX)
    )


def _is_binary_shape(names) -> bool:
    return PROBABILITY in names and not any(name.startswith(PROBABILITY_PREFIX) for name in names)


def _frame_columns(output: Any, rows: int) -> dict[str, np.ndarray]:
    """A pyfunc's output frame as typed arrays, one per output column in the frame's order."""
    if not isinstance(output, pd.DataFrame):
        raise InvalidModelOutput(
            f"the model returned {type(output).__name__}, not a DataFrame with a "
            "'prediction' column (and 'probability' for a classifier)"
        )
    if PREDICTION not in output.columns:
        absent = [name for name in (PROBABILITY, PREDICTION) if name not in output.columns]
        raise InvalidModelOutput(f"the model output lacks the column(s) {', '.join(absent)}")
    if len(output) != rows:
        raise InvalidModelOutput(f"the model returned {len(output)} predictions for {rows} rows")
    names = [name for name in output.columns if _is_output_column(name)]
    if len(set(names)) != len(names):
        raise InvalidModelOutput("the model output names a column twice")
    binary = _is_binary_shape(names)
    columns: dict[str, np.ndarray] = {}
    try:
        for name in names:
            if name != PREDICTION:
                columns[name] = output[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidModelOutput(f"the model output is not numeric: {exc}") from None
    columns[PREDICTION] = _prediction_array(output[PREDICTION], binary)
    return {name: columns[name] for name in names}


def _prediction_array(column: pd.Series, binary: bool) -> np.ndarray:
    """A pyfunc's ``prediction`` column: int64 labels, float64 values, or class names (object)."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        if binary and np.isfinite(values).all() and np.all(np.mod(values, 1) == 0):
            return values.astype(np.int64)
        if binary:
            raise InvalidModelOutput(f"the model's 'prediction' column holds {values.dtype} values, not integer labels")
        return values
    kind = pd.api.types.infer_dtype(column, skipna=False)
    if kind == "string":
        if binary:
            raise InvalidModelOutput(
                "the model's 'prediction' column holds text, not the integer labels 0/1 of a binary output"
            )
        return column.to_numpy(dtype=object)
    if kind == "integer":
        return column.to_numpy(dtype=np.int64)
    raise InvalidModelOutput(f"the model's 'prediction' column holds {kind} values, not labels, class names or numbers")
