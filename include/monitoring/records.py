"""The drift check's result as typed records: what :func:`include.monitoring.drift.run_drift_check` measures.

The result travels as JSON (the ``check_drift`` task's XCom, ``metrics.json``);
:meth:`DriftMetrics.to_dict` writes that JSON and :meth:`DriftMetrics.from_dict`
reads it back, so the key names live here. The shape, key by key, is in
:class:`DriftMetrics`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from include.util import fields as read

REFERENCE_DATA_KEYS = ("path", "md5", "rev")


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift: its ``drift_score`` by ``method`` (higher = more drift), drifted at or above
    ``threshold``. ``rows`` is how many window values were judged (None when not recorded) and
    ``judged_by`` where the threshold came from: ``calibrated`` (the column's null distribution at the
    window's size), ``fixed`` or ``constant`` (see :mod:`include.monitoring.columns`). The JSON
    (:meth:`to_dict`) is keyed by the column's name, so it leaves ``column`` out."""

    column: str
    method: str
    threshold: float
    drift_score: float
    rows: int | None = None
    judged_by: str = "fixed"

    @property
    def drifted(self) -> bool:
        """True when ``drift_score >= threshold``."""
        return self.drift_score >= self.threshold

    def to_dict(self) -> dict:
        """A JSON-ready dict: ``drift_score``, ``method``, ``threshold``, ``drifted``, ``rows``, ``judged_by``."""
        return {
            "drift_score": self.drift_score,
            "method": self.method,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "rows": self.rows,
            "judged_by": self.judged_by,
        }

    @classmethod
    def from_dict(cls, column: str, data: Any, where: str | None = None) -> ColumnDrift:
        """Column ``column``'s result from :meth:`to_dict`'s JSON, as a :class:`ColumnDrift` (``rows`` and
        ``judged_by`` may be absent, as in results written before they were recorded).

        Raises ``ValueError`` naming the missing or bad key (``where`` prefixes it, default
        ``columns.<column>``), including a ``drifted`` that disagrees with ``drift_score >= threshold``.
        """
        where = where or f"columns.{column}"
        data = read.mapping(data, where)
        result = cls(
            column,
            read.text(data, "method", where),
            read.number(data, "threshold", where),
            read.number(data, "drift_score", where),
            read.integer(data, "rows", where, optional=True) if "rows" in data else None,
            read.text(data, "judged_by", where) if "judged_by" in data else "fixed",
        )
        if read.flag(data, "drifted", where) != result.drifted:
            raise ValueError(
                f"{where}.drifted is {data['drifted']!r}, but drift_score {result.drift_score!r} "
                f"{'>=' if result.drifted else '<'} threshold {result.threshold!r}"
            )
        return result


@dataclass(frozen=True)
class ReportSample(read.ScalarRecord):
    """What the HTML report's Evidently part was drawn from (every figure of record uses all rows):
    ``sampled`` is whether either side was cut down, with the ``seed`` of the draw. Its JSON
    (:meth:`to_dict`, :meth:`from_dict`) is its fields by name."""

    WHERE = "report_sample"

    sampled: bool
    seed: int
    # rows the page's Evidently part shows, of each side's rows in all
    current_rows: int
    current_rows_total: int
    reference_rows: int
    reference_rows_total: int


def _band(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(x, (int, float)) for x in value):
        raise ValueError(f"{where}.estimated_roc_auc_band must be [lower, upper], got {value!r}")
    return [float(x) for x in value]


@dataclass(frozen=True)
class DriftMetrics:
    """One window measured against the champion's training data. The JSON (:meth:`to_dict`), key by key:

    - ``rows`` (int): rows in the window; ``labelled_rows`` (int): those with a label;
    - ``drift_share`` (float, 0..1): drifted feature columns / feature columns;
    - ``drifted_columns`` (list[str]): the drifted feature columns, in spec order;
    - ``columns`` (dict[str, :class:`ColumnDrift`]): every feature column, in spec order;
    - ``prediction_column`` (str) and ``prediction_drift`` (its :class:`ColumnDrift`);
    - ``metric`` (str): the reference's metric (the spec's ``gate.metric``);
    - ``score`` (float | None): that metric on the window's labelled rows, None when not measured;
    - ``reference_score`` (float | None): the champion's score on the held-out rows;
    - ``performance_drop`` (float | None): how much worse ``score`` is than ``reference_score``,
      in the metric's units (negative: better); None unless both exist;
    - ``performance_note`` (str): how the score was measured, or why it was not;
    - ``champion_version`` (str); ``reference_data`` (``{"path", "md5", "rev"}``, str);
    - ``reference_rows`` (int); ``reference_window_days`` (int | None): how many days the
      champion's snapshot spans, None when its lineage does not say;
    - ``drift_share_threshold``, ``performance_drop_threshold`` (float): as passed to the check;
    - ``report_sample`` (:class:`ReportSample`);
    - ``estimated_roc_auc`` (float | None): a binary champion's ROC AUC on the window estimated from
      its calibrated probabilities alone (CBPE, :mod:`include.monitoring.cbpe`), None for other
      tasks or a champion without a calibration; ``estimated_roc_auc_band`` (``[lower, upper]`` | None):
      its +-3 sampling-error band; ``reference_roc_auc`` (float | None): the champion's held-out ROC AUC;
      ``estimated_drop`` (float | None): ``reference_roc_auc - estimated_roc_auc``;
      ``estimated_drop_threshold`` (float | None): as passed to the check (None: estimation does not retrain).
    """

    rows: int
    labelled_rows: int
    drift_share: float
    drifted_columns: list[str]
    columns: dict[str, ColumnDrift]
    prediction_column: str
    prediction_drift: ColumnDrift
    metric: str
    score: float | None
    reference_score: float | None
    performance_drop: float | None
    performance_note: str
    champion_version: str
    reference_data: dict[str, str]
    reference_rows: int
    reference_window_days: int | None
    drift_share_threshold: float
    performance_drop_threshold: float
    report_sample: ReportSample
    estimated_roc_auc: float | None = None
    estimated_roc_auc_band: list[float] | None = None
    reference_roc_auc: float | None = None
    estimated_drop: float | None = None
    estimated_drop_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The drift check's JSON-ready dict, one key per field (nested records as their ``to_dict()``)."""
        return {
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "drift_share": self.drift_share,
            "drifted_columns": list(self.drifted_columns),
            "columns": {name: result.to_dict() for name, result in self.columns.items()},
            "prediction_column": self.prediction_column,
            "prediction_drift": self.prediction_drift.to_dict(),
            "metric": self.metric,
            "score": self.score,
            "reference_score": self.reference_score,
            "performance_drop": self.performance_drop,
            "performance_note": self.performance_note,
            "champion_version": self.champion_version,
            "reference_data": dict(self.reference_data),
            "reference_rows": self.reference_rows,
            "reference_window_days": self.reference_window_days,
            "drift_share_threshold": self.drift_share_threshold,
            "performance_drop_threshold": self.performance_drop_threshold,
            "report_sample": self.report_sample.to_dict(),
            "estimated_roc_auc": self.estimated_roc_auc,
            "estimated_roc_auc_band": None
            if self.estimated_roc_auc_band is None
            else list(self.estimated_roc_auc_band),
            "reference_roc_auc": self.reference_roc_auc,
            "estimated_drop": self.estimated_drop,
            "estimated_drop_threshold": self.estimated_drop_threshold,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DriftMetrics:
        """Read :meth:`to_dict`'s JSON into :class:`DriftMetrics`; other keys (``check_drift``'s ``status`` and paths)
        are ignored. Raises ``ValueError`` naming the missing or bad key: a key absent, a number that is not
        finite, a ``drift_share`` outside 0..1, a drifted column that is not among ``columns``.
        """
        where = "drift metrics"
        data = read.mapping(data, where)
        drift_share = read.number(data, "drift_share", where)
        if not 0 <= drift_share <= 1:
            raise ValueError(f"{where}.drift_share must be within 0..1, got {drift_share!r}")
        columns = {
            name: ColumnDrift.from_dict(name, result)
            for name, result in read.mapping(read.key(data, "columns", where), f"{where}.columns").items()
        }
        drifted = read.key(data, "drifted_columns", where)
        if not isinstance(drifted, list) or not all(isinstance(name, str) for name in drifted):
            raise ValueError(f"{where}.drifted_columns must be a list of column names, got {drifted!r}")
        unknown = [name for name in drifted if name not in columns]
        if unknown:
            raise ValueError(f"{where}.drifted_columns names column(s) not in columns: {', '.join(unknown)}")
        prediction_column = read.text(data, "prediction_column", where)
        reference_data = read.mapping(read.key(data, "reference_data", where), f"{where}.reference_data")
        return cls(
            rows=read.integer(data, "rows", where),
            labelled_rows=read.integer(data, "labelled_rows", where),
            drift_share=drift_share,
            drifted_columns=list(drifted),
            columns=columns,
            prediction_column=prediction_column,
            prediction_drift=ColumnDrift.from_dict(
                prediction_column, read.key(data, "prediction_drift", where), "prediction_drift"
            ),
            metric=read.text(data, "metric", where),
            score=read.number(data, "score", where, optional=True),
            reference_score=read.number(data, "reference_score", where, optional=True),
            performance_drop=read.number(data, "performance_drop", where, optional=True),
            performance_note=read.text(data, "performance_note", where),
            champion_version=read.text(data, "champion_version", where),
            reference_data={
                key: read.text(reference_data, key, f"{where}.reference_data") for key in REFERENCE_DATA_KEYS
            },
            reference_rows=read.integer(data, "reference_rows", where),
            reference_window_days=read.integer(data, "reference_window_days", where, optional=True),
            drift_share_threshold=read.number(data, "drift_share_threshold", where),
            performance_drop_threshold=read.number(data, "performance_drop_threshold", where),
            report_sample=ReportSample.from_dict(read.key(data, "report_sample", where)),
            # absent from results written before performance was estimated
            **{
                name: read.number(data, name, where, optional=True) if name in data else None
                for name in ("estimated_roc_auc", "reference_roc_auc", "estimated_drop", "estimated_drop_threshold")
            },
            estimated_roc_auc_band=_band(data.get("estimated_roc_auc_band"), where),
        )

    @classmethod
    def from_partial(cls, data: Any) -> DriftMetrics:
        """Returns what ``data`` holds of the shape as :class:`DriftMetrics`, unchecked and never raising, for a reader
        that judges the values it needs itself (the retraining decision refuses an unusable ``drift_share``
        with its own message). Each field holds the JSON value found (which may be NaN, a string, ...) or None when
        its key is absent; ``columns`` is ``{}`` unless a mapping, and its values are left as
        found. :meth:`to_dict` of such a record is not the drift check's JSON.
        """
        data = dict(data) if isinstance(data, Mapping) else {}
        values = {field.name: data.get(field.name) for field in fields(cls)}
        values["columns"] = dict(values["columns"]) if isinstance(values["columns"], Mapping) else {}
        return cls(**values)
