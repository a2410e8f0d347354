"""The dataset spec: the contract with the user's data.

Everything dataset-specific lives in one YAML file: the task (``binary``,
``multiclass`` or ``regression``), the target and its classes, the features and
their types, the id, timestamp and slice columns, where the daily partitions
are, and the dataset's own gate thresholds. Pointing the pipeline at another
dataset is a matter of writing another spec (see the README)::

    task: binary            # binary | multiclass | regression
    target: diagnosis
    positive_class: "malignant"   # binary only
    classes: [benign, malignant]  # optional for binary, required for multiclass
    features:
      - {name: income, type: numeric, nullable: true}
      - {name: region_code, type: categorical, categories: [1, 2, 3]}
    gate: {metric: roc_auc, min: 0.55, max_regression: 0.01}
    monitoring: {verdict: calibrated, false_alarm_rate: 0.01}
    rollout: {mode: canary}  # direct | shadow | canary, see include.data.rollout_spec

A feature's ``drift`` entry tunes its monitoring: ``drift: false`` leaves it out of
the drift check (a calendar feature that a one-day window cannot represent), and
``drift: {method: psi, threshold: 0.2}`` measures it with its own statistic and
fixed threshold, as Evidently allows per column (see :mod:`include.monitoring.columns`).

``id_column`` and ``timestamp_column`` may be left out: ``python -m
include.data.ingest`` then derives a stable row id (:data:`DERIVED_ID_COLUMN`)
and lands a snapshot table as one day (:data:`DERIVED_TIMESTAMP_COLUMN`).
"""

from __future__ import annotations

import math
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.data.rollout_spec import RolloutSpec, parse_rollout
from include.settings import PROJECT_ROOT

FEATURE_TYPES = ("numeric", "categorical")
TASKS = ("binary", "multiclass", "regression")
# the gate metric each task uses unless its spec names another
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
# every gateable metric and whether larger values are better
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "macro_f1": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
TASK_METRICS = {
    "binary": ("roc_auc", "pr_auc", "log_loss"),
    "multiclass": ("macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_MAX_REGRESSION = 0.01
# what ingest writes when the spec names no id / timestamp column
DERIVED_ID_COLUMN = "row_id"
DERIVED_TIMESTAMP_COLUMN = "event_time"
# the statistics a feature may name for its drift, by feature type
DRIFT_METHODS = {"numeric": ("wasserstein", "psi"), "categorical": ("jensenshannon", "psi")}
VERDICTS = ("calibrated", "fixed")
DEFAULT_FALSE_ALARM_RATE = 0.01
# YAML 1.1 reads these unquoted words as booleans: a category list holding one was meant as text
_YAML_BOOLEAN_WORDS = "yes/no, on/off, true/false, y/n"


class SpecError(ValueError):
    """The dataset spec is malformed; the message names the offending key."""


@dataclass(frozen=True)
class FeatureDrift:
    """A feature's monitoring: whether the drift check measures it at all (``monitored``), with which
    ``method`` (None: the type's default) and against which fixed ``threshold`` (None: calibrated)."""

    monitored: bool = True
    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class MonitoringSpec:
    """How drift verdicts are reached: ``verdict`` ``calibrated`` (each score against its null at the
    window's size, any column alarming on an undrifted window with at most ``false_alarm_rate``) or
    ``fixed`` (Evidently's 0.1 per column); ``min_score`` is a floor under calibrated thresholds."""

    verdict: str = "calibrated"
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    min_score: float = 0.0


@dataclass(frozen=True)
class Feature:
    """One feature column: its ``name``, ``type`` (numeric or categorical), optional range, the canonical
    text of its ``categories``, whether it may be null, and its :class:`FeatureDrift` monitoring."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    # canonical text of each category (see :func:`include.data.cast.category_text`)
    categories: tuple[str, ...] = ()
    nullable: bool = False
    drift: FeatureDrift = FeatureDrift()

    @property
    def is_numeric(self) -> bool:
        """True for a ``numeric`` feature, False for a ``categorical`` one."""
        return self.type == "numeric"


@dataclass(frozen=True)
class GateSpec:
    """The dataset's own promotion thresholds; the trigger form may override each per run.

    ``min`` is the bar in the metric's direction (a ceiling for rmse, mae and
    log_loss); None means "better than the no-skill baseline". ``max_regression``
    is the largest loss against the champion, in the metric's units.
    """

    metric: str
    min: float | None = None
    max_regression: float = DEFAULT_MAX_REGRESSION

    @property
    def higher_is_better(self) -> bool:
        """True when a larger value of the gate's metric is better (accuracy, AUC), False for losses."""
        return HIGHER_IS_BETTER[self.metric]


@dataclass(frozen=True)
class DatasetSpec:
    """A checked dataset spec (see the module's docstring); build it with :func:`load_spec`."""

    name: str
    location: str
    id_column: str
    timestamp_column: str
    target: str
    features: tuple[Feature, ...]
    slice_feature: str | None
    expectation_suite: Path
    format: str = "parquet"
    description: str = ""
    source: Path | None = field(default=None, compare=False)
    task: str = "binary"
    # canonical text of the target's classes (classification); () when not declared
    classes: tuple[str, ...] = ()
    positive_class: str | None = None
    gate: GateSpec | None = None
    monitoring: MonitoringSpec = MonitoringSpec()
    rollout: RolloutSpec = RolloutSpec()
    derived_id: bool = False
    derived_timestamp: bool = False

    def __post_init__(self) -> None:
        if self.gate is None:
            object.__setattr__(self, "gate", GateSpec(DEFAULT_METRIC[self.task]))
        if self.task == "binary" and self.positive_class is None:
            object.__setattr__(self, "positive_class", "1")

    @property
    def feature_names(self) -> list[str]:
        """The feature names in spec order, a list of str."""
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        """The names of the numeric features in spec order, a list of str."""
        return [f.name for f in self.features if f.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        """The names of the categorical features in spec order, a list of str."""
        return [f.name for f in self.features if not f.is_numeric]

    @property
    def columns(self) -> list[str]:
        """Every column a landed partition holds, in a stable order: a list of str (id, timestamp, features, target)."""
        return [self.id_column, self.timestamp_column, *self.feature_names, self.target]

    @property
    def is_classification(self) -> bool:
        """True for a binary or multiclass task, False for regression."""
        return self.task != "regression"

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names evaluation reports for this task, the gate's first: a tuple of str."""
        names = TASK_METRICS[self.task]
        return (self.gate.metric, *(name for name in names if name != self.gate.metric))

    def feature(self, name: str) -> Feature:
        """Returns the :class:`Feature` called ``name``; raises ``KeyError`` when there is none."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


def _expand(value: str, key: str, environ) -> str:
    try:
        return string.Template(value).substitute(environ)
    except KeyError as missing:
        raise SpecError(f"{key}: environment variable {missing.args[0]} is not set") from None


def category_text(value: Any) -> str:
    """The canonical text of a category or class label: ``1``, ``1.0`` and ``"1"`` are all ``"1"``.

    Integer-coded categories arrive as int64, as float64 once a column holds a
    null, as strings from a CSV with quotes, or as a pandas category of any of
    those; one canonical text makes them the same category everywhere. Returns a str; never raises.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return category_text(value.item())
    return str(value)


def _categories(where: str, name: str, values: Any, allow_booleans: bool = False) -> tuple[str, ...]:
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where} ({name}) needs a non-empty list")
    for value in values:
        if isinstance(value, bool) and not allow_booleans:
            raise SpecError(
                f"{where} ({name}) holds the boolean {value!r}: YAML reads unquoted "
                f'{_YAML_BOOLEAN_WORDS} as booleans; quote them, e.g. ["yes", "no"]'
            )
        if value is None or isinstance(value, (dict, list)):
            raise SpecError(f"{where} ({name}) holds {value!r}; categories are strings or integers")
    texts = tuple(category_text(value) for value in values)
    if len(set(texts)) != len(texts):
        raise SpecError(f"{where} ({name}) has duplicate values {list(texts)}")
    return texts


def _number(path: Path, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"dataset spec {path}: {key} must be a number, got {value!r}")
    return float(value)


def _gate(path: Path, raw: Any, task: str) -> GateSpec:
    if raw is None:
        return GateSpec(DEFAULT_METRIC[task])
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path}: gate must be a mapping with metric, min, max_regression")
    unknown = sorted(set(raw) - {"metric", "min", "max_regression"})
    if unknown:
        raise SpecError(f"dataset spec {path}: gate has unknown key(s) {unknown}; expected metric, min, max_regression")
    metric = raw.get("metric") or DEFAULT_METRIC[task]
    if metric not in TASK_METRICS[task]:
        raise SpecError(
            f"dataset spec {path}: gate.metric {metric!r} does not fit task {task!r}; "
            f"expected one of {', '.join(TASK_METRICS[task])}"
        )
    max_regression = _number(path, "gate.max_regression", raw.get("max_regression"))
    if max_regression is not None and max_regression < 0:
        raise SpecError(f"dataset spec {path}: gate.max_regression must be >= 0, got {max_regression}")
    return GateSpec(
        metric=metric,
        min=_number(path, "gate.min", raw.get("min")),
        max_regression=DEFAULT_MAX_REGRESSION if max_regression is None else max_regression,
    )


def _feature_drift(where: str, feature_type: str, raw: Any) -> FeatureDrift:
    if raw is None or raw is True:
        return FeatureDrift()
    if raw is False:
        return FeatureDrift(monitored=False)
    if not isinstance(raw, dict) or set(raw) - {"method", "threshold"}:
        raise SpecError(f"{where}.drift must be true, false or a mapping with method and/or threshold, got {raw!r}")
    method = raw.get("method")
    if method is not None and method not in DRIFT_METHODS[feature_type]:
        raise SpecError(
            f"{where}.drift.method {method!r} does not fit a {feature_type} feature; "
            f"expected one of {', '.join(DRIFT_METHODS[feature_type])}"
        )
    threshold = raw.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < math.inf
    ):
        raise SpecError(f"{where}.drift.threshold must be a number above 0, got {threshold!r}")
    return FeatureDrift(True, method, None if threshold is None else float(threshold))


def _monitoring(path: Path, raw: Any) -> MonitoringSpec:
    if raw is None:
        return MonitoringSpec()
    expected = {"verdict", "false_alarm_rate", "min_score"}
    if not isinstance(raw, dict) or set(raw) - expected:
        raise SpecError(f"dataset spec {path}: monitoring must be a mapping with keys among {sorted(expected)}")
    verdict = raw.get("verdict", "calibrated")
    if verdict not in VERDICTS:
        raise SpecError(
            f"dataset spec {path}: monitoring.verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}"
        )
    rate = _number(path, "monitoring.false_alarm_rate", raw.get("false_alarm_rate"))
    rate = DEFAULT_FALSE_ALARM_RATE if rate is None else rate
    if not 0 < rate <= 0.1:
        raise SpecError(f"dataset spec {path}: monitoring.false_alarm_rate must be within (0, 0.1], got {rate}")
    min_score = _number(path, "monitoring.min_score", raw.get("min_score")) or 0.0
    if min_score < 0:
        raise SpecError(f"dataset spec {path}: monitoring.min_score must be >= 0, got {min_score}")
    return MonitoringSpec(verdict, rate, min_score)


def _target_classes(path: Path, raw: dict, task: str) -> tuple[tuple[str, ...], str | None]:
    classes: tuple[str, ...] = ()
    if raw.get("classes") is not None:
        if task == "regression":
            raise SpecError(f"dataset spec {path}: classes applies to binary and multiclass tasks only")
        # a boolean target (True/False) is a real case: booleans are allowed here
        classes = _categories("classes", raw["target"], raw["classes"], allow_booleans=True)
    positive = raw.get("positive_class")
    if task == "binary":
        positive_text = "1" if positive is None else category_text(positive)
        if classes and len(classes) != 2:
            raise SpecError(f"dataset spec {path}: a binary task has two classes, got {list(classes)}")
        if classes and positive_text not in classes:
            raise SpecError(
                f"dataset spec {path}: positive_class {positive_text!r} is not one of classes {list(classes)}"
            )
        return classes, positive_text
    if positive is not None:
        raise SpecError(f"dataset spec {path}: positive_class applies to binary tasks only")
    if task == "multiclass" and len(classes) < 3:
        raise SpecError(
            f"dataset spec {path}: a multiclass task needs 'classes' with at least 3 values "
            f"(got {list(classes)}); with two, use task: binary"
        )
    return classes, None


def load_spec(path: str | Path, environ=None) -> DatasetSpec:
    """Read and check a dataset spec; ``${VAR}`` in ``location`` comes from the environment.

    Returns the checked :class:`DatasetSpec`. Raises :class:`SpecError` naming the key for a missing
    file, invalid YAML, a missing or malformed key, or a combination that cannot work (a binary task
    with three classes, a numeric slice feature, a metric of another task).
    """
    from include.settings import Settings

    path = Path(path)
    env = dict(os.environ if environ is None else environ)
    env.setdefault("MLOPS_HOME", str(Settings.from_env(env).home))
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"dataset spec {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"dataset spec {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path} must be a mapping")
    for key in ("name", "location", "target", "features", "expectation_suite"):
        if key not in raw:
            raise SpecError(f"dataset spec {path}: missing key '{key}'")
    task = raw.get("task", "binary")
    if task not in TASKS:
        raise SpecError(f"dataset spec {path}: task must be one of {', '.join(TASKS)}, got {task!r}")
    features = []
    for index, item in enumerate(raw["features"] or []):
        where = f"dataset spec {path}: features[{index}]"
        if not isinstance(item, dict) or "name" not in item or "type" not in item:
            raise SpecError(f"{where} needs 'name' and 'type'")
        if item["type"] not in FEATURE_TYPES:
            raise SpecError(f"{where}.type must be one of {FEATURE_TYPES}, got {item['type']!r}")
        unknown = sorted(set(item) - {"name", "type", "min", "max", "categories", "nullable", "drift"})
        if unknown:
            raise SpecError(f"{where} ({item['name']}) has unknown key(s) {unknown}")
        categories: tuple[str, ...] = ()
        if item["type"] == "categorical":
            if not item.get("categories"):
                raise SpecError(f"{where} ({item['name']}) is categorical and needs 'categories'")
            categories = _categories(f"{where}.categories", item["name"], item["categories"])
        nullable = item.get("nullable", False)
        if not isinstance(nullable, bool):
            raise SpecError(f"{where}.nullable must be true or false, got {nullable!r}")
        features.append(
            Feature(
                name=str(item["name"]),
                type=item["type"],
                min=_number(path, f"features[{index}].min", item.get("min")),
                max=_number(path, f"features[{index}].max", item.get("max")),
                categories=categories,
                nullable=nullable,
                drift=_feature_drift(where, item["type"], item.get("drift")),
            )
        )
    if not features:
        raise SpecError(f"dataset spec {path}: 'features' is empty")
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise SpecError(f"dataset spec {path}: duplicate feature names in 'features'")
    target = str(raw["target"])
    id_column = raw.get("id_column") or DERIVED_ID_COLUMN
    timestamp_column = raw.get("timestamp_column") or DERIVED_TIMESTAMP_COLUMN
    reserved = [target, str(id_column), str(timestamp_column)]
    clash = [name for name in names if name in reserved]
    if clash or len(set(reserved)) != 3:
        raise SpecError(
            f"dataset spec {path}: the target, id and timestamp columns must differ from each other "
            f"and from every feature (clash: {clash or reserved})"
        )
    slice_feature = raw.get("slice_feature")
    if slice_feature is not None and (
        slice_feature not in names or next(f for f in features if f.name == slice_feature).is_numeric
    ):
        raise SpecError(f"dataset spec {path}: slice_feature '{slice_feature}' must be a categorical feature")
    classes, positive_class = _target_classes(path, raw, task)
    suite = Path(raw["expectation_suite"])
    if not suite.is_absolute():
        suite = PROJECT_ROOT / suite
    return DatasetSpec(
        name=str(raw["name"]),
        location=_expand(str(raw["location"]), "location", env),
        id_column=str(id_column),
        timestamp_column=str(timestamp_column),
        target=target,
        features=tuple(features),
        slice_feature=slice_feature,
        expectation_suite=suite,
        format=str(raw.get("format", "parquet")),
        description=str(raw.get("description", "")).strip(),
        source=path,
        task=task,
        classes=classes,
        positive_class=positive_class,
        gate=_gate(path, raw.get("gate"), task),
        monitoring=_monitoring(path, raw.get("monitoring")),
        rollout=parse_rollout(str(path), raw.get("rollout")),
        derived_id=not raw.get("id_column"),
        derived_timestamp=not raw.get("timestamp_column"),
    )
