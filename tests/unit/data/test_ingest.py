"""Landing the user's own exports: python -m include.data.ingest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from include.data import ingest as ingest_module
from include.data.ingest import IngestError, ingest, main
from include.data.partitions import partition_dates, read_window
from include.data.spec import load_spec


def write_spec(tmp_path: Path, **overrides) -> Path:
    """A small timestamped binary spec; ``overrides`` replace or (with None) remove keys."""
    raw = {
        "name": "orders",
        "location": str(tmp_path / "landing"),
        "expectation_suite": "suite.json",
        "id_column": "order_id",
        "timestamp_column": "ts",
        "task": "binary",
        "target": "churned",
        "features": [
            {"name": "amount", "type": "numeric"},
            {"name": "visits", "type": "numeric", "nullable": True},
            {"name": "plan", "type": "categorical", "categories": ["basic", "pro"]},
        ],
    }
    raw.update(overrides)
    raw = {key: value for key, value in raw.items() if value is not None}
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def orders(days=("2024-03-01", "2024-03-02", "2024-03-03"), per_day=4) -> pd.DataFrame:
    """A real-looking export: ids, ISO times with offsets, an int column, text, an extra column."""
    rows = []
    for day_index, day in enumerate(days):
        for i in range(per_day):
            rows.append(
                {
                    "order_id": f"O{day_index}{i}",
                    "ts": f"{day}T{8 + 2 * i:02d}:15:00+00:00",
                    "amount": 10.5 * (i + 1),
                    "visits": i,
                    "plan": "basic" if i % 2 else "pro",
                    "churned": i % 2,
                    "comment": "not in the spec",
                }
            )
    return pd.DataFrame(rows)


def landed_files(spec_path: Path) -> list[Path]:
    return sorted(Path(load_spec(spec_path).location).rglob("*.parquet"))


def read_day(spec_path: Path, day: date) -> pd.DataFrame:
    spec = load_spec(spec_path)
    files = sorted((Path(spec.location) / f"date={day:%Y-%m-%d}").glob("*.parquet"))
    return pd.concat([pq.ParquetFile(path).read().to_pandas() for path in files], ignore_index=True)


# --- a snapshot table: scikit-learn's breast-cancer set, no id, no timestamp ---------------------


@pytest.fixture
def breast_cancer(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.data.copy()
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    source = tmp_path / "breast_cancer.csv"
    frame.to_csv(source, index=False)
    spec = write_spec(
        tmp_path,
        name="breast_cancer",
        id_column=None,
        timestamp_column=None,
        target="diagnosis",
        positive_class="malignant",
        features=[{"name": str(name), "type": "numeric"} for name in data.feature_names],
    )
    return spec, source, frame


def test_snapshot_lands_on_as_of_day_with_derived_ids_and_reingest_lands_nothing(breast_cancer, capsys):
    spec_path, source, frame = breast_cancer
    spec = load_spec(spec_path)

    assert main(["--spec", str(spec_path), "--as-of", "2024-05-01", str(source)]) == 0
    assert "2024-05-01: landed 569" in capsys.readouterr().out

    assert partition_dates(spec) == [date(2024, 5, 1)]
    landed = read_window(spec, date(2024, 5, 1), date(2024, 5, 2))
    assert list(landed.columns) == spec.columns == ["row_id", "event_time", *frame.columns]
    assert len(landed) == len(frame) == 569
    assert landed["row_id"].is_unique
    assert str(landed["event_time"].dtype) == "datetime64[ns, UTC]"
    assert (landed["event_time"] == pd.Timestamp("2024-05-01", tz="UTC")).all()
    # the values land as given: the labels stay text, the model's 0/1 comes later
    assert sorted(landed["diagnosis"].unique()) == ["benign", "malignant"]
    pd.testing.assert_series_equal(landed["mean radius"], frame["mean radius"])
    files = landed_files(spec_path)

    assert main(["--spec", str(spec_path), "--as-of", "2024-05-01", str(source)]) == 0
    assert "2024-05-01: landed 0 row(s), skipped 569" in capsys.readouterr().out
    assert landed_files(spec_path) == files
    assert len(read_window(spec, date(2024, 5, 1), date(2024, 5, 2))) == 569


def test_derived_ids_are_stable_and_keep_duplicate_rows_distinct(breast_cancer, tmp_path):
    spec_path, source, frame = breast_cancer
    doubled = tmp_path / "doubled.csv"
    pd.concat([frame.head(3), frame.head(1)]).to_csv(doubled, index=False)

    report = ingest(load_spec(spec_path), [doubled], as_of="2024-05-01")
    ids = read_day(spec_path, date(2024, 5, 1))["row_id"].tolist()

    assert report.landed == {date(2024, 5, 1): 4}
    assert len(set(ids)) == 4
    assert ids[0].endswith("-0") and ids[3] == ids[0][:-2] + "-1"
    # the same rows from the bigger export get the same ids: only the new ones land
    again = ingest(load_spec(spec_path), [source], as_of="2024-05-01")
    assert again.landed == {date(2024, 5, 1): 566} and again.skipped == {date(2024, 5, 1): 3}


def test_snapshot_needs_as_of_and_a_timestamped_spec_refuses_it(breast_cancer, tmp_path, capsys):
    spec_path, source, _ = breast_cancer
    assert main(["--spec", str(spec_path), str(source)]) == 2
    assert "--as-of" in capsys.readouterr().err

    orders().to_csv(tmp_path / "orders.csv", index=False)
    with pytest.raises(IngestError, match="this spec has a timestamp column"):
        ingest(load_spec(write_spec(tmp_path)), [tmp_path / "orders.csv"], as_of="2024-05-01")
    assert landed_files(spec_path) == []


# --- a table with a timestamp column --------------------------------------------------------------


def test_rows_land_in_the_partition_of_their_utc_day(tmp_path):
    spec_path = write_spec(tmp_path)
    source = tmp_path / "orders.csv"
    export = orders()
    export.loc[2, "ts"] = "2024-03-01T23:30:00-02:00"  # 01:30 UTC on March 2nd
    export.to_csv(source, index=False)

    report = ingest(load_spec(spec_path), [source])

    days = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]
    assert partition_dates(load_spec(spec_path)) == days
    assert report.landed == dict(zip(days, [3, 5, 4], strict=False)) and report.total_landed == 12
    assert sorted(read_day(spec_path, days[0])["order_id"]) == ["O00", "O01", "O03"]
    assert sorted(read_day(spec_path, days[1])["order_id"]) == ["O02", "O10", "O11", "O12", "O13"]
    assert sorted(read_day(spec_path, days[2])["order_id"]) == ["O20", "O21", "O22", "O23"]
    third = read_day(spec_path, days[2])
    assert list(third.columns) == ["order_id", "ts", "amount", "visits", "plan", "churned"]
    assert (third["ts"].dt.date == days[2]).all()

    # a later export repeating a day's rows and adding one: only the new row lands
    new_row = orders(days=("2024-03-03",), per_day=5).tail(1).assign(order_id="O24")
    repeat = pd.concat([export[export["order_id"].str.startswith("O2")], new_row])
    repeat.to_csv(tmp_path / "again.csv", index=False)
    second = ingest(load_spec(spec_path), [tmp_path / "again.csv"])
    assert second.landed == {days[2]: 1} and second.skipped == {days[2]: 4}
    assert len(landed_files(spec_path)) == 4
    assert sorted(read_day(spec_path, days[2])["order_id"]) == ["O20", "O21", "O22", "O23", "O24"]


def test_folders_and_fsspec_urls_are_sources(tmp_path):
    import fsspec

    spec_path = write_spec(tmp_path)
    folder = tmp_path / "exports" / "march"
    folder.mkdir(parents=True)
    export = orders()
    export.iloc[:4].to_csv(folder / "day1.csv", index=False)
    export.iloc[4:8].to_parquet(folder / "day2.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    (folder / ".partial.csv").write_text('half "written')  # hidden: an export still being written
    with fsspec.open("memory://ingest-test/day3.csv.gz", "wb", compression="gzip") as handle:
        handle.write(export.iloc[8:].to_csv(index=False).encode())
    try:
        report = ingest(load_spec(spec_path), [tmp_path / "exports", "memory://ingest-test/day3.csv.gz"])
    finally:
        fsspec.filesystem("memory").rm("/ingest-test", recursive=True)
    assert report.total_landed == 12 and len(report.files) == 3


# --- bad input: a clear error and nothing written --------------------------------------------------


def _missing_column(frame):
    return frame.drop(columns=["visits"])


def _set(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row - 1, column] = value  # row numbers count data rows from 1
        return frame

    return change


BAD_INPUTS = {
    "missing column": ({}, _missing_column, ["'visits'", "bad.csv"]),
    "unparsable timestamp": ({}, _set("ts", 3, "yesterday"), ["'ts'", "row 3", "'yesterday'"]),
    "missing timestamp": ({}, _set("ts", 5, None), ["'ts'", "row 5", "is empty"]),
    "text in numeric feature": ({}, _set("amount", 2, "12,50 EUR"), ["'amount'", "row 2", "'12,50 EUR'"]),
    "label outside classes": ({"classes": [0, 1]}, _set("churned", 4, 7), ["'churned'", "row 4", "7"]),
    "third binary value": ({}, _set("churned", 6, "maybe"), ["'churned'", "row 6", "'maybe'"]),
    "missing label": ({}, _set("churned", 2, None), ["'churned'", "row 2", "missing"]),
    "absent positive class": ({"positive_class": "yes"}, lambda frame: frame, ["'churned'", "'yes'", "no row"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_column_and_row_and_writes_nothing(tmp_path, case, capsys):
    overrides, change, expected = BAD_INPUTS[case]
    spec_path = write_spec(tmp_path, **overrides)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    orders(days=("2024-02-01",)).to_csv(good, index=False)  # a valid source before the bad one
    change(orders()).to_csv(bad, index=False)

    with pytest.raises(IngestError) as error:
        ingest(load_spec(spec_path), [good, bad])
    for text in expected:
        assert text in str(error.value)
    assert main(["--spec", str(spec_path), str(good), str(bad)]) == 2
    assert expected[0] in capsys.readouterr().err
    assert not Path(load_spec(spec_path).location).exists()


def test_unreadable_and_unknown_sources_are_named(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "notes.txt").write_text("order_id\n1\n")
    for source, text in [
        ("broken.parquet", "cannot be read"),
        ("notes.txt", "is not a"),
        ("nowhere.csv", "does not exist"),
    ]:
        with pytest.raises(IngestError, match=text) as error:
            ingest(spec, [tmp_path / source])
        assert source in str(error.value)
    assert not Path(spec.location).exists()


def test_a_new_category_is_not_an_error(tmp_path):
    spec_path = write_spec(tmp_path)
    export = orders()
    export.loc[0, "plan"] = "enterprise"
    export.to_csv(tmp_path / "orders.csv", index=False)
    assert ingest(load_spec(spec_path), [tmp_path / "orders.csv"]).total_landed == 12
    assert "enterprise" in set(read_day(spec_path, date(2024, 3, 1))["plan"])


def test_a_failed_write_removes_what_the_run_wrote(tmp_path, monkeypatch):
    spec_path = write_spec(tmp_path)
    orders().to_csv(tmp_path / "orders.csv", index=False)
    real_write, calls = ingest_module.write_atomically, []

    def failing_write(path, payload):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(path, payload)

    monkeypatch.setattr(ingest_module, "write_atomically", failing_write)
    with pytest.raises(IngestError, match="disk full"):
        ingest(load_spec(spec_path), [tmp_path / "orders.csv"])
    assert calls[0].exists() is False
    assert not Path(load_spec(spec_path).location).exists()


# --- types: one Parquet type per column, whatever the day holds -----------------------------------


def test_nullable_integers_and_categories_land_with_one_type_on_every_day(tmp_path):
    spec_path = write_spec(tmp_path)
    # a CSV export whose integer column has an empty cell ("0,,2,3"): pandas reads it as float64
    with_gap = orders(days=("2024-03-05",))
    with_gap["visits"] = with_gap["visits"].astype("Int64")
    with_gap.loc[1, "visits"] = pd.NA
    with_gap.to_csv(tmp_path / "with_gap.csv", index=False)
    # a Parquet export with a nullable integer column (nulls on the second day only) and a category
    export = orders(days=("2024-03-01", "2024-03-02"))
    export["visits"] = pd.array([1, 2, 3, 4, None, 6, None, 8], dtype="Int64")
    export["plan"] = export["plan"].astype("category")
    export.iloc[:4].to_parquet(tmp_path / "early.parquet", index=False)
    export.iloc[4:].to_parquet(tmp_path / "late.parquet", index=False)
    # and a CSV export without a gap: pandas reads int64
    orders(days=("2024-03-06",)).to_csv(tmp_path / "no_gap.csv", index=False)

    ingest(load_spec(spec_path), [tmp_path / "with_gap.csv"])
    ingest(load_spec(spec_path), [tmp_path / "early.parquet", tmp_path / "late.parquet"])
    ingest(load_spec(spec_path), [tmp_path / "no_gap.csv"])

    files = landed_files(spec_path)
    schemas = [pq.read_schema(path).remove_metadata() for path in files]
    assert len(files) == 4 and all(schema == schemas[0] for schema in schemas)
    frames = [pq.ParquetFile(path).read().to_pandas() for path in files]
    for frame in frames:
        assert str(frame["visits"].dtype) == "Int64" and str(frame["churned"].dtype) == "Int64"
        assert frame["plan"].dtype == object and set(frame["plan"]) <= {"basic", "pro"}
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert [frame["visits"].isna().sum() for frame in frames] == [0, 2, 1, 0]
    assert frames[0]["visits"].tolist() == [1, 2, 3, 4]
    assert frames[2]["visits"].tolist()[:2] == [0, pd.NA]


def test_whole_numbers_into_a_landed_float_column_stay_float(tmp_path):
    spec_path = write_spec(tmp_path)
    orders(days=("2024-03-01",)).to_csv(tmp_path / "first.csv", index=False)  # amount 10.5, 21.0, ...
    whole = orders(days=("2024-03-02",)).assign(amount=[20, 30, 40, 50])  # this export holds int64
    whole.to_csv(tmp_path / "whole.csv", index=False)

    ingest(load_spec(spec_path), [tmp_path / "first.csv"])
    ingest(load_spec(spec_path), [tmp_path / "whole.csv"])

    assert read_day(spec_path, date(2024, 3, 2))["amount"].dtype == np.float64
    assert read_day(spec_path, date(2024, 3, 2))["amount"].tolist() == [20.0, 30.0, 40.0, 50.0]


def test_files_are_named_by_their_rows(tmp_path):
    spec_path = write_spec(tmp_path)
    orders().to_csv(tmp_path / "orders.csv", index=False)
    first = ingest(load_spec(spec_path), [tmp_path / "orders.csv"]).files
    assert all(re.fullmatch(r"part-[0-9a-f]{16}\.parquet", path.name) for path in first)
    assert len({path.name for path in first}) == 3
    for path in first:
        path.unlink()
    assert ingest(load_spec(spec_path), [tmp_path / "orders.csv"]).files == first


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, include.data.ingest; "
        "assert not [name for name in sys.modules if name.split('.')[0] == 'airflow'], 'airflow imported'"
    )
    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
    assert list(tmp_path.iterdir()) == []
