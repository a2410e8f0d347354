"""The demo data as real exports store it: four dtype variants, each with the spec that describes it.

Each variant is the demo's seeded churn data (``include.simulation.generate.generate_day``
with the demo spec) with one change of storage type applied after generating, written
as the export a user would hand to ``python -m include.data.ingest``:

- ``int64``: the whole-number numeric features as int64, as CSV (every CSV reader
  stores counts that way);
- ``category``: the four categorical features as pandas ``category``, as Parquet
  (dictionary-encoded);
- ``nullable-int``: the whole-number features as nullable ``Int64`` with about 5 %
  nulls in two of them, which the spec declares ``nullable: true``, as Parquet;
- ``integer-codes``: ``plan`` and ``contract`` as integer codes 1, 2, 3, which the
  spec declares as ``categories: [1, 2, 3]``, as CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from include.settings import PROJECT_ROOT

DEMO_SPEC = PROJECT_ROOT / "include" / "datasets" / "customer_churn.yaml"
WHOLE_NUMBER_FEATURES = ("tenure_months", "support_calls_30d", "days_since_last_login", "num_devices")
NULLABLE_FEATURES = ("support_calls_30d", "days_since_last_login")
CATEGORICAL_FEATURES = ("plan", "region", "payment_method", "contract")
# the integer code each category of the coded features is stored as
CODES = {
    "plan": {"basic": 1, "standard": 2, "premium": 3},
    "contract": {"monthly": 1, "annual": 2, "two_year": 3},
}
NULL_SHARE = 0.05
VARIANTS = ("int64", "category", "nullable-int", "integer-codes")
FORMATS = {"int64": "csv", "category": "parquet", "nullable-int": "parquet", "integer-codes": "csv"}


@dataclass(frozen=True)
class Export:
    """One variant written out: its spec file, the export folder and the raw frame it holds."""

    variant: str
    spec_path: Path
    export_dir: Path
    frame: pd.DataFrame  # every exported row, with the variant's dtypes
    days: tuple[date, ...]


def write_spec(variant: str, root: Path, name: str) -> Path:
    """The demo spec's content with the variant's own name, location, suite file, gate and features."""
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["name"] = name
    raw["location"] = str(root / "landing" / name)
    raw["expectation_suite"] = str(root / "suites" / f"{name}.json")
    raw["gate"] = {"metric": "roc_auc", "min": 0.6}
    for feature in raw["features"]:
        if variant == "nullable-int" and feature["name"] in NULLABLE_FEATURES:
            feature["nullable"] = True
        if variant == "integer-codes" and feature["name"] in CODES:
            feature["categories"] = sorted(CODES[feature["name"]].values())
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def apply_variant(variant: str, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The generated day stored as the variant stores it (a new frame)."""
    frame = frame.copy()
    if variant == "int64":
        for name in WHOLE_NUMBER_FEATURES:
            frame[name] = frame[name].astype(np.int64)
    elif variant == "category":
        for name in CATEGORICAL_FEATURES:
            frame[name] = frame[name].astype("category")
    elif variant == "nullable-int":
        for name in WHOLE_NUMBER_FEATURES:
            column = frame[name].astype("Int64")
            if name in NULLABLE_FEATURES:
                column[rng.random(len(column)) < NULL_SHARE] = pd.NA
            frame[name] = column
    elif variant == "integer-codes":
        for name, codes in CODES.items():
            frame[name] = frame[name].map(codes).astype(np.int64)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return frame


def write_export(
    variant: str, root: Path, name: str, first_day: date, days: int, rows_per_day: int, seed: int = 7
) -> Export:
    """Generate ``days`` days, apply the variant, write one export file per day; the spec too."""
    from include.data.spec import load_spec
    from include.simulation.generate import generate_day

    spec_path = write_spec(variant, root, name)
    demo = load_spec(DEMO_SPEC, environ={"MLOPS_HOME": str(root / "unused-home")})
    export_dir = root / "export" / name
    export_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames, landed_days = [], []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        frame = apply_variant(variant, generate_day(demo, day, rows_per_day, seed), rng)
        if FORMATS[variant] == "csv":
            frame.to_csv(export_dir / f"churn-{day:%Y%m%d}.csv", index=False)
        else:
            frame.to_parquet(export_dir / f"churn-{day:%Y%m%d}.parquet", engine="pyarrow", index=False)
        frames.append(frame)
        landed_days.append(day)
    everything = pd.concat(frames, ignore_index=True)
    if variant == "category":  # concat of categories with different dictionaries falls back to object
        for column in CATEGORICAL_FEATURES:
            everything[column] = everything[column].astype("category")
    return Export(variant, spec_path, export_dir, everything, tuple(landed_days))


def check_dtypes(variant: str, frame: pd.DataFrame) -> None:
    """The raw frame really holds the variant's dtypes (a guard against a silent no-op variant)."""
    if variant == "int64":
        assert all(frame[name].dtype == np.int64 for name in WHOLE_NUMBER_FEATURES)
    elif variant == "category":
        assert all(isinstance(frame[name].dtype, pd.CategoricalDtype) for name in CATEGORICAL_FEATURES)
    elif variant == "nullable-int":
        assert all(frame[name].dtype == "Int64" for name in WHOLE_NUMBER_FEATURES)
        for name in NULLABLE_FEATURES:
            share = frame[name].isna().mean()
            assert 0.02 < share < 0.09, f"{name}: null share {share:.3f}"
    elif variant == "integer-codes":
        assert all(frame[name].dtype == np.int64 for name in CODES)


def check_export(export: Export) -> None:
    """The files hold what the variant promises: CSV text, or Parquet with dictionary-encoded categories."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    suffix = "." + FORMATS[export.variant]
    files = sorted(export.export_dir.iterdir())
    assert len(files) == len(export.days) and all(path.suffix == suffix for path in files), files
    if export.variant == "category":
        schema = pq.read_schema(files[0])
        assert all(pa.types.is_dictionary(schema.field(name).type) for name in CATEGORICAL_FEATURES), schema


def request_rows(variant: str, frame: pd.DataFrame, spec_features: list[str], rows: int = 12) -> pd.DataFrame:
    """A few raw rows to send: for ``nullable-int`` half of them hold a null."""
    features = frame[spec_features]
    if variant != "nullable-int":
        return features.tail(rows).reset_index(drop=True)
    with_null = features[features[list(NULLABLE_FEATURES)].isna().any(axis=1)].head(rows // 2)
    complete = features[features.notna().all(axis=1)].head(rows - len(with_null))
    picked = pd.concat([with_null, complete])
    assert len(with_null) == rows // 2 and len(picked) == rows
    return picked.reset_index(drop=True)


def json_value(value: Any) -> Any:
    """A cell as JSON carries it: ints stay ints, a missing value is null, text stays text."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def payload(rows: pd.DataFrame) -> dict:
    """``dataframe_split`` with every value in the variant's raw type (ints as ints, codes as codes)."""
    data = [[json_value(value) for value in record] for record in rows.astype(object).itertuples(index=False)]
    return {"dataframe_split": {"columns": list(rows.columns), "data": data}}
