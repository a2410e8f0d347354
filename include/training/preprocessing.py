"""Tabular feature preprocessing, fit on the training frame only.

Numeric features are imputed with the training mean and standardised;
categorical features are one-hot encoded over the categories the dataset spec
declares, so the matrix layout is fixed by the spec and not by whichever
values happened to occur in one training window. A value outside the spec's
categories (or a missing one) encodes as all zeros rather than failing: the
serving path must answer for a new plan name, and data validation is where
unexpected values are reported. Columns are typed by :mod:`include.data.cast`,
the one cast every path shares, so integer codes, pandas categories and
nullable integers encode exactly as the training frame's values did.

The fitted state is a small JSON document, saved next to the model weights, so
the served model applies exactly the transformation training used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.data.cast import CastError, categorical_column, numeric_column

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

FORMAT_VERSION = 1


class PreprocessingError(ValueError):
    """The input frame cannot be preprocessed; the message names the column."""


@dataclass(frozen=True)
class NumericStats:
    """A numeric feature's training ``mean`` and ``std`` (population), used to standardise it."""

    mean: float
    std: float


class TabularPreprocessor:
    """Frame of spec features -> float32 matrix: standardised numerics, then one-hot blocks."""

    def __init__(self, numeric_features: Sequence[str], categories: Mapping[str, Sequence[str]]):
        numeric = [str(name) for name in numeric_features]
        categorical = {str(name): tuple(str(value) for value in values) for name, values in categories.items()}
        names = numeric + list(categorical)
        if not names:
            raise PreprocessingError("a preprocessor needs at least one feature")
        if len(set(names)) != len(names):
            raise PreprocessingError(f"feature names must be unique, got {names}")
        for name, values in categorical.items():
            if not values:
                raise PreprocessingError(f"categorical feature {name!r} has no categories")
            if len(set(values)) != len(values):
                raise PreprocessingError(f"categorical feature {name!r} has duplicate categories {list(values)}")
        self.numeric_features: tuple[str, ...] = tuple(numeric)
        self.categories: dict[str, tuple[str, ...]] = categorical
        self.numeric_stats: dict[str, NumericStats] | None = None
        # per-call constants, built once so transform allocates only its output
        self._category_arrays = {name: np.array(values, dtype=object) for name, values in categorical.items()}

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> TabularPreprocessor:
        """An unfitted preprocessor for the spec's numeric and categorical features."""
        return cls(spec.numeric_features, {f.name: f.categories for f in spec.features if not f.is_numeric})

    @property
    def feature_names(self) -> list[str]:
        """Input columns the preprocessor reads: a list of str, numeric features first."""
        return [*self.numeric_features, *self.categories]

    @property
    def output_names(self) -> list[str]:
        """One name per output column, e.g. ``tenure_months`` or ``plan=basic``: a list of str."""
        return [
            *self.numeric_features,
            *(f"{name}={value}" for name, values in self.categories.items() for value in values),
        ]

    @property
    def output_dim(self) -> int:
        """The number of output columns (an int): one per numeric feature, one per declared category."""
        return len(self.numeric_features) + sum(len(values) for values in self.categories.values())

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`from_dict`) has set the numeric statistics."""
        return self.numeric_stats is not None

    def fit(self, frame: pd.DataFrame) -> TabularPreprocessor:
        """Learn each numeric feature's mean and standard deviation from ``frame``; returns ``self``.

        Raises :class:`PreprocessingError` for a missing feature column, an empty frame, or a numeric
        feature with no non-missing value.
        """
        self._check_columns(frame)
        if len(frame) == 0:
            raise PreprocessingError("cannot fit a preprocessor on an empty frame")
        stats = {}
        for name in self.numeric_features:
            values = self._numeric_column(frame, name)
            observed = values[~np.isnan(values)]
            if observed.size == 0:
                raise PreprocessingError(f"numeric feature {name!r} has no non-missing value in the training frame")
            std = float(observed.std())
            # a constant column carries no signal; dividing by 1 keeps it at 0 instead of NaN
            stats[name] = NumericStats(mean=float(observed.mean()), std=std if std > 0 else 1.0)
        self.numeric_stats = stats
        return self

    def transform(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """The model matrix of ``frame``: a DataFrame, or a mapping of column name to a 1-d array
        (what a server holds once it has parsed a request; no DataFrame needs building for it).

        Returns a float32 array of shape (rows, :attr:`output_dim`). Raises :class:`PreprocessingError`
        when unfitted, for a missing feature column, columns of different lengths, or another input type.
        """
        if self.numeric_stats is None:
            raise PreprocessingError("the preprocessor is not fitted: call fit() or load it with from_dict()")
        rows = self._check_columns(frame)
        out = np.zeros((rows, self.output_dim), dtype=np.float32)
        column = 0
        for name in self.numeric_features:
            stats = self.numeric_stats[name]
            values = self._numeric_column(frame, name)
            values = np.where(np.isnan(values), stats.mean, values)
            out[:, column] = (values - stats.mean) / stats.std
            column += 1
        for name, categories in self._category_arrays.items():
            values = self._categorical_column(frame, name)
            width = len(categories)
            # rows matching no category (unseen or missing) stay all zeros
            out[:, column : column + width] = values[:, None] == categories[None, :]
            column += width
        return out

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Fit on ``frame``, then return its :meth:`transform`; the errors of both."""
        return self.fit(frame).transform(frame)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as a JSON-ready dict with keys ``format_version``, ``numeric`` and ``categorical``.

        Raises :class:`PreprocessingError` when unfitted.
        """
        if self.numeric_stats is None:
            raise PreprocessingError("cannot serialise an unfitted preprocessor")
        return {
            "format_version": FORMAT_VERSION,
            "numeric": [
                {"name": name, "mean": self.numeric_stats[name].mean, "std": self.numeric_stats[name].std}
                for name in self.numeric_features
            ],
            "categorical": [{"name": name, "categories": list(values)} for name, values in self.categories.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularPreprocessor:
        """The fitted preprocessor :meth:`to_dict` wrote.

        Raises :class:`PreprocessingError` for a non-mapping, another ``format_version``, a missing key,
        or a non-finite mean or non-positive standard deviation.
        """
        if not isinstance(data, Mapping):
            raise PreprocessingError(f"preprocessor state must be a mapping, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PreprocessingError(f"preprocessor state has format_version {version!r}, expected {FORMAT_VERSION}")
        try:
            numeric = list(data["numeric"])
            categorical = list(data["categorical"])
            preprocessor = cls(
                [item["name"] for item in numeric], {item["name"]: item["categories"] for item in categorical}
            )
            stats = {item["name"]: NumericStats(mean=float(item["mean"]), std=float(item["std"])) for item in numeric}
        except (KeyError, TypeError) as exc:
            raise PreprocessingError(f"preprocessor state is malformed: {exc!r}") from None
        for name, value in stats.items():
            if not (math.isfinite(value.mean) and math.isfinite(value.std) and value.std > 0):
                raise PreprocessingError(f"preprocessor state for {name!r} has invalid mean/std {value}")
        preprocessor.numeric_stats = stats
        return preprocessor

    def _check_columns(self, frame: pd.DataFrame | Mapping[str, Any]) -> int:
        """The number of rows, once every feature column is known to be there."""
        if isinstance(frame, pd.DataFrame):
            names, rows = frame.columns, len(frame)
        elif isinstance(frame, Mapping):
            names = frame.keys()
            lengths = {len(frame[name]) for name in self.feature_names if name in frame}
            if len(lengths) > 1:
                raise PreprocessingError(f"the input columns differ in length: {sorted(lengths)}")
            rows = lengths.pop() if lengths else 0
        else:
            raise PreprocessingError(f"expected a pandas DataFrame or a mapping of columns, got {type(frame).__name__}")
        missing = [name for name in self.feature_names if name not in names]
        if missing:
            raise PreprocessingError(f"input is missing required feature column(s): {', '.join(missing)}")
        return rows

    @staticmethod
    def _numeric_column(frame: pd.DataFrame | Mapping[str, Any], name: str) -> np.ndarray:
        try:
            return numeric_column(frame[name], name)
        except CastError as exc:
            raise PreprocessingError(str(exc)) from None

    @staticmethod
    def _categorical_column(frame: pd.DataFrame | Mapping[str, Any], name: str) -> np.ndarray:
        return categorical_column(frame[name], name)
