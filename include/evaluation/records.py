"""The evaluation result as typed records: what :func:`include.evaluation.evaluate.evaluate` measures.

The result travels as JSON (the ``evaluate`` task's XCom, ``evaluation.json``);
:meth:`Evaluation.to_dict` writes that JSON and :meth:`Evaluation.from_dict`
reads it back, so the key names live here and nowhere else. The shape::

    {"task": str, "metric": str, "higher_is_better": bool, "baseline": float | None,
     "slice_feature": str | None, "holdout_rows": int,
     "challenger": {"uri": str, "overall": scores, "slices": {value: scores},
                    "latency_ms": {"p50", "p95", "wall_p50", "wall_p95": float,
                                   "requests", "rows_per_request": int, "method": str},
                    "latency_budget_ms": float, "within_latency_budget": bool},
     "champion": {"uri": str, "overall": scores, "slices": {value: scores}} | None,
     "champion_version": str | None}     # only once the pipeline looked the champion up

``scores`` is :func:`include.evaluation.metrics.score`'s dict: the task's metrics
(a float, or None when undefined on the rows), ``rows`` and, for a multiclass
task, ``recall`` (class -> float). Its metric names depend on the task, so it
stays a dict.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.util import fields as read


class _Unset:
    """The value of a field whose key the JSON does not have (as opposed to a null)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

Scores = dict[str, Any]


def _scores(data: Any, where: str) -> Scores:
    """A :func:`~include.evaluation.metrics.score` dict: name -> finite number, null, or name -> number."""
    scores = read.mapping(data, where)
    for name, value in scores.items():
        if isinstance(value, Mapping):
            bad = [label for label, number in value.items() if not read.is_number(number)]
            if bad:
                raise ValueError(f"{where}.{name}.{bad[0]} must be a finite number, got {value[bad[0]]!r}")
        elif value is not None and not read.is_number(value):
            raise ValueError(f"{where}.{name} must be a finite number or null, got {value!r}")
    return copy.deepcopy(dict(scores))


def _partial_mapping(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, Mapping) else {}


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class Latency(read.ScalarRecord):
    """The challenger's serving latency (:func:`include.evaluation.evaluate.measure_latency`):
    ``p50``/``p95`` in milliseconds of CPU time (the gate reads ``p95``), ``wall_p50``/``wall_p95``
    in milliseconds of wall clock, over ``requests`` calls of ``rows_per_request`` rows. Its JSON
    (:meth:`to_dict`, :meth:`from_dict`) is its fields by name."""

    WHERE = "latency_ms"

    p50: float
    p95: float
    wall_p50: float
    wall_p95: float
    requests: int
    rows_per_request: int
    method: str

    @classmethod
    def from_partial(cls, data: Any) -> Latency | None:
        """Returns what ``data`` holds as a :class:`Latency`, unchecked (None for an absent key); None when it is not
        a mapping."""
        if not isinstance(data, Mapping):
            return None
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ModelScores:
    """One model's scores on the held-out rows: ``overall``, per slice value (``slices``) and,
    for the challenger only, its latency (``latency_ms``), budget and verdict."""

    uri: str
    overall: Scores
    slices: dict[str, Scores]
    latency_ms: Latency | None = None
    latency_budget_ms: float | None = None
    within_latency_budget: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The scores as a JSON-ready dict: ``uri``, ``overall``, ``slices``, and the latency keys when measured."""
        result = {"uri": self.uri, "overall": copy.deepcopy(self.overall), "slices": copy.deepcopy(self.slices)}
        if self.latency_ms is not None:
            result.update(
                latency_ms=self.latency_ms.to_dict(),
                latency_budget_ms=self.latency_budget_ms,
                within_latency_budget=self.within_latency_budget,
            )
        return result

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelScores:
        """Returns the :class:`ModelScores` :meth:`to_dict` wrote.

        Raises ``ValueError`` naming the missing or bad key (``where`` prefixes it, e.g. ``challenger``).
        The latency keys are read when ``latency_ms`` is there, and then all three are required.
        """
        data = read.mapping(data, where)
        uri = read.text(data, "uri", where)
        overall = _scores(read.key(data, "overall", where), f"{where}.overall")
        slices = {
            value: _scores(scores, f"{where}.slices.{value}")
            for value, scores in read.mapping(read.key(data, "slices", where), f"{where}.slices").items()
        }
        if "latency_ms" not in data:
            return cls(uri, overall, slices)
        return cls(
            uri,
            overall,
            slices,
            latency_ms=Latency.from_dict(data["latency_ms"], f"{where}.latency_ms"),
            latency_budget_ms=read.number(data, "latency_budget_ms", where),
            within_latency_budget=read.flag(data, "within_latency_budget", where),
        )

    @classmethod
    def from_partial(cls, data: Any) -> ModelScores:
        """Returns what ``data`` holds as :class:`ModelScores`, unchecked and never raising: ``overall`` is ``{}``
        unless a mapping, ``slices`` None unless a mapping (each slice ``{}`` unless a mapping), the rest as found
        or None."""
        data = _partial_mapping(data)
        slices = data.get("slices")
        return cls(
            uri=data.get("uri"),
            overall=_partial_mapping(data.get("overall")),
            slices={value: _partial_mapping(scores) for value, scores in slices.items()}
            if isinstance(slices, Mapping)
            else None,
            latency_ms=Latency.from_partial(data.get("latency_ms")),
            latency_budget_ms=data.get("latency_budget_ms"),
            within_latency_budget=data.get("within_latency_budget"),
        )


@dataclass(frozen=True)
class Evaluation:
    """The challenger (and champion) on the same held-out rows; see the module docstring for the JSON.

    ``champion`` is None when there was no champion (the first model). ``champion_version``
    is :data:`UNSET` until the pipeline has looked the champion up; its key is then left out
    of :meth:`to_dict`, as :func:`~include.evaluation.evaluate.evaluate` leaves it out.
    """

    task: str
    metric: str
    higher_is_better: bool
    baseline: float | None
    slice_feature: str | None
    holdout_rows: int
    challenger: ModelScores
    champion: ModelScores | None
    champion_version: str | None = UNSET

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as its JSON-ready dict (``champion_version`` only when set); :meth:`from_dict` reads it back."""
        result = {
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "slice_feature": self.slice_feature,
            "holdout_rows": self.holdout_rows,
            "challenger": self.challenger.to_dict(),
            "champion": None if self.champion is None else self.champion.to_dict(),
        }
        if self.champion_version is not UNSET:
            result["champion_version"] = self.champion_version
        return result

    @classmethod
    def from_dict(cls, data: Any) -> Evaluation:
        """Read :meth:`to_dict`'s JSON into an :class:`Evaluation`; other keys are ignored.

        Raises ``ValueError`` naming the missing or bad key (e.g. ``challenger.overall.roc_auc
        must be a finite number or null, got nan``): a key of the shape absent, a score that is
        not a finite number or null, a challenger without its latency.
        """
        data = read.mapping(data, "evaluation")
        where = "evaluation"
        challenger = ModelScores.from_dict(read.key(data, "challenger", where), "challenger")
        if challenger.latency_ms is None:
            raise ValueError("challenger is missing 'latency_ms' (the gate reads its p95)")
        champion = read.key(data, "champion", where)
        return cls(
            task=read.text(data, "task", where),
            metric=read.text(data, "metric", where),
            higher_is_better=read.flag(data, "higher_is_better", where),
            baseline=read.number(data, "baseline", where, optional=True),
            slice_feature=read.text(data, "slice_feature", where, optional=True),
            holdout_rows=read.integer(data, "holdout_rows", where),
            challenger=challenger,
            champion=None if champion is None else ModelScores.from_dict(champion, "champion"),
            champion_version=read.text(data, "champion_version", where, optional=True)
            if "champion_version" in data
            else UNSET,
        )

    @classmethod
    def from_partial(cls, data: Any) -> Evaluation:
        """Returns what ``data`` holds of the shape as an :class:`Evaluation`, unchecked and never raising, for a reader
        that judges every value itself and must not raise on a broken evaluation (the gate fails closed).

        A field holds the JSON value found, which may be NaN, a string or anything else, or None
        when its key is absent; ``champion`` is :data:`UNSET` when its key is absent (None means
        "no champion") and ``champion_version`` likewise. :meth:`to_dict` of such a record is not
        the evaluation's JSON.
        """
        data = _partial_mapping(data)
        champion = data.get("champion", UNSET)
        return cls(
            task=data.get("task"),
            metric=data.get("metric"),
            higher_is_better=data.get("higher_is_better"),
            baseline=data.get("baseline"),
            slice_feature=data.get("slice_feature"),
            holdout_rows=data.get("holdout_rows"),
            challenger=ModelScores.from_partial(data.get("challenger")),
            champion=champion if champion is None or champion is UNSET else ModelScores.from_partial(champion),
            champion_version=data.get("champion_version", UNSET),
        )
