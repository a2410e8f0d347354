"""Public tables that ship inside packages, written out the way real exports look.

Each ``write_*`` function writes CSV export(s) and a dataset spec under ``folder``
and returns a :class:`PublicDataset`: what a new user would have after reading the
README's "Your own data" section. Nothing downloads: scikit-learn, palmerpenguins
and vega_datasets carry these tables in their wheels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


@dataclass
class PublicDataset:
    name: str
    spec_path: Path
    # (export files, --as-of day or None) per ingest call, in the order a user would land them
    exports: list[tuple[list[Path], date | None]]
    # the ml_training conf that trains on the history, and the replayed days' range [start, end)
    training_conf: dict
    replay_start: date
    replay_end: date | None
    drift_conf: dict = field(default_factory=dict)


def _spec(folder: Path, name: str, body: dict) -> Path:
    spec = {
        "name": name,
        "location": str(folder / "landing" / name),
        "format": "parquet",
        "expectation_suite": str(folder / f"{name}.suite.json"),
        **body,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    # a package's table is sorted by class; an export of a live table is not
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_breast_cancer(folder: Path) -> PublicDataset:
    """Binary with string labels (malignant/benign), 30 numeric features, no id, no timestamp:
    two monthly snapshot exports, landed with --as-of."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "diagnosis"})
    frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target]
    frame = _shuffled(frame, 3)
    first, second = folder / "breast_cancer_2026-04.csv", folder / "breast_cancer_2026-05.csv"
    frame.iloc[:400].to_csv(first, index=False)
    frame.iloc[400:].to_csv(second, index=False)
    features = [{"name": str(name), "type": "numeric"} for name in bunch.feature_names]
    spec = _spec(
        folder,
        "breast_cancer",
        {
            "task": "binary",
            "target": "diagnosis",
            "positive_class": "malignant",
            "classes": ["benign", "malignant"],
            "features": features,
            "gate": {"metric": "roc_auc", "min": 0.9, "max_regression": 0.02},
        },
    )
    return PublicDataset(
        "breast_cancer",
        spec,
        [([first], date(2026, 4, 1)), ([second], date(2026, 5, 1))],
        {"training_window_end": "2026-04-01", "training_window_days": 1},
        date(2026, 5, 1),
        None,
        {"min_rows": 100},
    )


def write_penguins(folder: Path) -> PublicDataset:
    """Multiclass (species), real nulls in five columns, an integer ``year`` read as a category:
    two snapshot exports."""
    from palmerpenguins import load_penguins

    frame = _shuffled(load_penguins(), 5)
    first, second = folder / "penguins_2026-06.csv", folder / "penguins_2026-07.csv"
    frame.iloc[:250].to_csv(first, index=False)
    frame.iloc[250:].to_csv(second, index=False)
    measurements = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    features = [{"name": name, "type": "numeric", "nullable": True} for name in measurements]
    features += [
        {"name": "island", "type": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "sex", "type": "categorical", "categories": ["female", "male"], "nullable": True},
        {"name": "year", "type": "categorical", "categories": [2007, 2008, 2009]},
    ]
    spec = _spec(
        folder,
        "penguins",
        {
            "task": "multiclass",
            "target": "species",
            "classes": ["Adelie", "Chinstrap", "Gentoo"],
            "slice_feature": "island",
            "features": features,
            "gate": {"metric": "macro_f1", "min": 0.8, "max_regression": 0.05},
        },
    )
    return PublicDataset(
        "penguins",
        spec,
        [([first], date(2026, 6, 1)), ([second], date(2026, 7, 1))],
        {"training_window_end": "2026-06-01", "training_window_days": 1},
        date(2026, 7, 1),
        None,
        {"min_rows": 50},
    )


def write_diabetes(folder: Path) -> PublicDataset:
    """Regression; ``age`` exported as whole numbers (int64 once read), ``sex`` coded 1.0/2.0."""
    from sklearn.datasets import load_diabetes

    frame = _shuffled(load_diabetes(as_frame=True, scaled=False).frame, 7)
    frame["age"] = frame["age"].astype("int64")
    first, second = folder / "diabetes_2026-08.csv", folder / "diabetes_2026-09.csv"
    frame.iloc[:320].to_csv(first, index=False)
    frame.iloc[320:].to_csv(second, index=False)
    features = [{"name": name, "type": "numeric"} for name in ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]]
    features.append({"name": "sex", "type": "categorical", "categories": [1, 2]})
    spec = _spec(
        folder,
        "diabetes",
        {
            "task": "regression",
            "target": "target",
            "slice_feature": "sex",
            "features": features,
            # no bar: a first model must beat predicting the mean; the tolerance is in the target's units
            "gate": {"metric": "rmse", "max_regression": 5.0},
        },
    )
    return PublicDataset(
        "diabetes",
        spec,
        [([first], date(2026, 8, 1)), ([second], date(2026, 9, 1))],
        {"training_window_end": "2026-08-01", "training_window_days": 1},
        date(2026, 9, 1),
        None,
        {"min_rows": 100},
    )


def write_seattle_weather(folder: Path) -> PublicDataset:
    """Multiclass weather, one row a day with its own date: train on spring and summer 2012,
    monitor the winter that follows (a real seasonal shift)."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    export = folder / "seattle_weather.csv"
    frame.to_csv(export, index=False)
    features = [{"name": name, "type": "numeric"} for name in ["precipitation", "temp_max", "temp_min", "wind"]]
    spec = _spec(
        folder,
        "seattle_weather",
        {
            "task": "multiclass",
            "target": "weather",
            "timestamp_column": "date",
            "classes": ["drizzle", "fog", "rain", "snow", "sun"],
            "features": features,
            # fog and drizzle are hard to tell from sun: no bar, beat the no-skill model
            "gate": {"metric": "macro_f1", "max_regression": 0.1},
        },
    )
    return PublicDataset(
        "seattle_weather",
        spec,
        [([export], None)],
        {"training_window_end": "2012-09-30", "training_window_days": 183},
        date(2012, 12, 1),
        date(2013, 3, 1),
        {"min_rows": 60, "window_days": 90},
    )
