"""The dataset spec: feature names and types, target, timestamp and location.

The pipeline reads everything dataset-specific from this file, so pointing it at
another dataset is a matter of writing another spec (see the README).
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from include.settings import PROJECT_ROOT

FEATURE_TYPES = ("numeric", "categorical")


class SpecError(ValueError):
    """The dataset spec is malformed; the message names the offending key."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.type == "numeric"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    location: str
    id_column: str
    timestamp_column: str
    target: str
    features: tuple[Feature, ...]
    slice_feature: str
    expectation_suite: Path
    format: str = "parquet"
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if not f.is_numeric]

    @property
    def columns(self) -> list[str]:
        """Every column a partition must hold, in a stable order."""
        return [self.id_column, self.timestamp_column, *self.feature_names, self.target]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


def _expand(value: str, key: str, environ) -> str:
    try:
        return string.Template(value).substitute(environ)
    except KeyError as missing:
        raise SpecError(f"{key}: environment variable {missing.args[0]} is not set") from None


def load_spec(path: str | Path, environ=None) -> DatasetSpec:
    """Read and check a dataset spec; ``${VAR}`` in ``location`` comes from the environment."""
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
    for key in ("name", "location", "id_column", "timestamp_column", "target", "features",
                "slice_feature", "expectation_suite"):
        if key not in raw:
            raise SpecError(f"dataset spec {path}: missing key '{key}'")
    features = []
    for index, item in enumerate(raw["features"] or []):
        where = f"features[{index}]"
        if not isinstance(item, dict) or "name" not in item or "type" not in item:
            raise SpecError(f"dataset spec {path}: {where} needs 'name' and 'type'")
        if item["type"] not in FEATURE_TYPES:
            raise SpecError(f"dataset spec {path}: {where}.type must be one of {FEATURE_TYPES}, got {item['type']!r}")
        if item["type"] == "categorical" and not item.get("categories"):
            raise SpecError(f"dataset spec {path}: {where} ({item['name']}) is categorical and needs 'categories'")
        features.append(Feature(
            name=str(item["name"]), type=item["type"], min=item.get("min"), max=item.get("max"),
            categories=tuple(str(c) for c in item.get("categories") or ()),
        ))
    if not features:
        raise SpecError(f"dataset spec {path}: 'features' is empty")
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise SpecError(f"dataset spec {path}: duplicate feature names in 'features'")
    slice_feature = raw["slice_feature"]
    if slice_feature not in names or next(f for f in features if f.name == slice_feature).is_numeric:
        raise SpecError(f"dataset spec {path}: slice_feature '{slice_feature}' must be a categorical feature")
    suite = Path(raw["expectation_suite"])
    if not suite.is_absolute():
        suite = PROJECT_ROOT / suite
    return DatasetSpec(
        name=str(raw["name"]),
        location=_expand(str(raw["location"]), "location", env),
        id_column=str(raw["id_column"]),
        timestamp_column=str(raw["timestamp_column"]),
        target=str(raw["target"]),
        features=tuple(features),
        slice_feature=slice_feature,
        expectation_suite=suite,
        format=str(raw.get("format", "parquet")),
        description=str(raw.get("description", "")).strip(),
        source=path,
    )
