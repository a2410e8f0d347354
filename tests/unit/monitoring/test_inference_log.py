"""The inference log on real files (a temporary folder, and fsspec's memory store)."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.monitoring.inference_log import (
    InferenceLogError,
    InferenceLogWriter,
    read_window,
    write_labels,
)

UTC = UTC
DAY = date(2026, 11, 10)
MIDNIGHT = datetime(2026, 11, 10, tzinfo=UTC)
FILE_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{32}\.parquet$")
# a writer that only writes when asked: its thread waits an hour and its buffer holds a million rows
MANUAL = {"flush_rows": 1_000_000, "flush_seconds": 3600}


def features(rows: int, start: int = 0) -> dict[str, np.ndarray]:
    return {
        "tenure_months": np.arange(start, start + rows, dtype=np.float64),
        "plan": np.array(["basic", "premium"] * rows, dtype=object)[:rows],
    }


def binary_outputs(rows: int) -> dict[str, np.ndarray]:
    return {"probability": np.linspace(0.1, 0.9, rows), "prediction": np.arange(rows) % 2}


def append(
    writer: InferenceLogWriter,
    rows: int,
    at: datetime | list[datetime],
    prefix: str = "r",
    start: int = 0,
    version: str = "3",
    frame=None,
    outputs=None,
) -> list[str]:
    ids = [f"{prefix}-{start + index}" for index in range(rows)]
    writer.append(
        features(rows, start) if frame is None else frame,
        binary_outputs(rows) if outputs is None else outputs,
        version,
        ids,
        at,
    )
    return ids


def parquet_files(root: Path, kind: str = "predictions") -> dict[str, list[Path]]:
    base = root / kind
    if not base.exists():
        return {}
    return {folder.name: sorted(folder.iterdir()) for folder in sorted(base.iterdir())}


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def window(root, first: date = DAY, days: int = 1, **kwargs) -> pd.DataFrame:
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    return read_window(root, start, start + timedelta(days=days), **kwargs)


# -------------------------------------------------------------------------- writer


def test_append_does_no_io_and_flush_writes_every_buffered_row(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        ids = append(writer, 3, MIDNIGHT + timedelta(hours=1)) + append(
            writer, 2, MIDNIGHT + timedelta(hours=2), start=3
        )
        assert parquet_files(tmp_path) == {}
        assert writer.pending_rows == 5

        assert writer.flush() == 5

        assert writer.pending_rows == 0 and writer.rows_written == 5 and writer.write_errors == 0
        logged = window(tmp_path)
    assert logged["request_id"].tolist() == ids
    assert logged.columns.tolist() == [
        "request_id",
        "timestamp",
        "model_name",
        "model_version",
        "tenure_months",
        "plan",
        "probability",
        "prediction",
        "other_version",
        "other_probability",
        "other_prediction",
        "label",
    ]
    assert str(logged["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (
        logged["timestamp"].tolist()
        == [pd.Timestamp(MIDNIGHT + timedelta(hours=1))] * 3 + [pd.Timestamp(MIDNIGHT + timedelta(hours=2))] * 2
    )
    assert (logged["model_name"] == "churn").all() and (logged["model_version"] == "3").all()
    assert logged["tenure_months"].dtype == np.float64 and logged["tenure_months"].tolist() == [0, 1, 2, 3, 4]
    assert logged["plan"].tolist() == ["basic", "premium", "basic", "basic", "premium"]
    assert logged["prediction"].dtype == np.int64 and logged["probability"].dtype == np.float64


def test_the_background_thread_flushes_when_flush_rows_are_buffered(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", flush_rows=10, flush_seconds=3600) as writer:
        append(writer, 6, MIDNIGHT)
        assert writer.rows_written == 0
        append(writer, 4, MIDNIGHT, start=6)

        assert wait_for(lambda: writer.rows_written == 10), "10 buffered rows were not flushed"
        assert len(window(tmp_path)) == 10


def test_the_background_thread_flushes_after_flush_seconds(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", flush_rows=1_000_000, flush_seconds=0.2) as writer:
        append(writer, 3, MIDNIGHT)

        assert wait_for(lambda: writer.rows_written == 3, timeout=5), "rows were not flushed on time"
        assert len(window(tmp_path)) == 3


def test_close_flushes_what_is_left_and_refuses_more_rows(tmp_path):
    writer = InferenceLogWriter(tmp_path, "churn", **MANUAL)
    append(writer, 4, MIDNIGHT)

    assert writer.close() == 4

    assert len(window(tmp_path)) == 4
    with pytest.raises(InferenceLogError, match="closed"):
        append(writer, 1, MIDNIGHT)
    assert writer.close() == 0


def test_a_buffer_spanning_midnight_is_split_by_day(tmp_path):
    late, early = MIDNIGHT + timedelta(hours=23, minutes=59), MIDNIGHT + timedelta(days=1, minutes=1)
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 2, late, prefix="late")
        append(writer, 3, early, prefix="early")
        # one batch whose own rows straddle midnight, one timestamp per row
        append(writer, 2, [late, early], prefix="straddle")

    files = parquet_files(tmp_path)
    assert list(files) == ["date=2026-11-10", "date=2026-11-11"]
    assert all(len(names) == 1 for names in files.values())
    first, second = window(tmp_path), window(tmp_path, DAY + timedelta(days=1))
    assert first["request_id"].tolist() == ["late-0", "late-1", "straddle-0"]
    assert second["request_id"].tolist() == ["early-0", "early-1", "early-2", "straddle-1"]
    assert len(window(tmp_path, days=2)) == 7


def test_files_appear_whole_under_their_final_name(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 5, MIDNIGHT)
        writer.flush()
        append(writer, 5, MIDNIGHT, start=5)
        writer.flush()

    names = [path.name for path in parquet_files(tmp_path)["date=2026-11-10"]]
    assert len(names) == 2 and all(FILE_NAME.match(name) for name in names), names
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".")], "a temporary file was left"
    # a write in progress elsewhere (hidden temporary name) is not read
    (tmp_path / "predictions" / "date=2026-11-10" / ".20261110T000000-x.parquet.tmp").write_bytes(b"PAR1 partial")
    assert len(window(tmp_path)) == 10


def test_a_failing_store_is_counted_and_its_rows_are_written_once_it_recovers(tmp_path, caplog):
    root = tmp_path / "log"
    root.mkdir()
    blocker = root / "predictions"
    blocker.write_text("a file where the predictions folder should be")
    with InferenceLogWriter(root, "churn", **MANUAL) as writer:
        ids = append(writer, 4, MIDNIGHT)

        assert writer.flush() == 0
        assert writer.write_errors == 1 and writer.rows_written == 0 and writer.rows_dropped == 0
        assert writer.pending_rows == 4
        assert "could not write 4 inference log rows" in caplog.text

        blocker.unlink()
        ids = ids + append(writer, 2, MIDNIGHT, start=4)
        assert writer.flush() == 6

        assert writer.pending_rows == 0 and writer.rows_written == 6 and writer.rows_dropped == 0
    assert sorted(window(root)["request_id"]) == sorted(ids)


def test_rows_beyond_the_retry_limit_are_dropped_and_counted(tmp_path):
    root = tmp_path / "log"
    root.mkdir()
    (root / "predictions").write_text("blocks every write")
    writer = InferenceLogWriter(root, "churn", **MANUAL, max_retained_rows=5)
    append(writer, 4, MIDNIGHT)
    writer.flush()
    append(writer, 4, MIDNIGHT, start=4)
    writer.flush()

    assert writer.rows_dropped == 4 and writer.pending_rows == 4 and writer.write_errors == 2
    writer.close()
    assert writer.rows_dropped == 8 and writer.rows_written == 0


def test_rows_that_cannot_be_stored_are_dropped_and_counted_without_losing_the_others(tmp_path):
    # a column holding a string and a number has no Parquet type (a model without a signature takes anything)
    mixed = {"tenure_months": np.array([1.0, 2.0]), "plan": np.array(["basic", 7], dtype=object)}
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        good = append(writer, 2, MIDNIGHT)
        append(writer, 2, MIDNIGHT, prefix="bad", frame=mixed)
        good = good + append(writer, 2, MIDNIGHT, start=2)
        writer.flush()

        assert writer.rows_written == 4 and writer.rows_dropped == 2 and writer.write_errors == 1
    assert window(tmp_path)["request_id"].tolist() == good


def test_a_retyped_column_stays_visible_when_read_back(tmp_path):
    retyped = {
        "tenure_months": np.array(["twelve", "13"], dtype=object),
        "plan": np.array(["basic", "basic"], dtype=object),
    }
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 2, MIDNIGHT)
        append(writer, 2, MIDNIGHT + timedelta(hours=1), prefix="retyped", frame=retyped)

    logged = window(tmp_path)
    assert len(parquet_files(tmp_path)["date=2026-11-10"]) == 2  # one file per column layout
    assert logged["tenure_months"].dtype == object
    assert logged["tenure_months"].tolist() == [0.0, 1.0, "twelve", "13"]


def test_a_dataframe_is_logged_like_a_mapping(tmp_path):
    frame = pd.DataFrame(features(3))
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 3, MIDNIGHT, frame=frame)

    logged = window(tmp_path)
    pd.testing.assert_frame_equal(logged[["tenure_months", "plan"]], frame)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"outputs": {"probability": [0.5], "prediction": [0, 1]}}, "1 values of the output column 'probability'"),
        ({"outputs": {"probability": [0.1, 0.2]}}, "lack the column 'prediction'"),
        ({"outputs": {"prediction": [0, 1], "score": [1.0, 2.0]}}, "unknown output column"),
        ({"request_ids": ["a"]}, "for 1 request ids"),
        ({"timestamps": datetime(2026, 11, 10)}, "no timezone"),
        ({"timestamps": [MIDNIGHT]}, "1 timestamps for 2 rows"),
        ({"timestamps": "2026-11-10T00:00:00Z"}, "timezone-aware datetime"),
        ({"features": {"timestamp": np.array([1.0, 2.0])}}, "clash"),
        (
            {
                "features": {"probability_a": np.array([1.0, 2.0])},
                "outputs": {"prediction": ["a", "b"], "probability_a": [0.5, 0.5]},
            },
            "clash",
        ),
    ],
)
def test_append_refuses_inconsistent_rows(tmp_path, change, message):
    arguments = {
        "features": features(2),
        "outputs": {"probability": [0.1, 0.2], "prediction": [0, 1]},
        "model_version": "3",
        "request_ids": ["a", "b"],
        "timestamps": MIDNIGHT,
        **change,
    }
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        with pytest.raises(ValueError, match=message):
            writer.append(**arguments)
        assert writer.pending_rows == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"model_name": ""}, "model_name"),
        ({"flush_rows": 0}, "flush_rows"),
        ({"flush_seconds": float("nan")}, "flush_seconds"),
        ({"root": " "}, "root"),
    ],
)
def test_the_writer_refuses_bad_settings(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        InferenceLogWriter(**{"root": tmp_path, "model_name": "churn", **arguments})


def test_an_fsspec_url_works_like_a_folder():
    root = f"memory://inference-log-{uuid.uuid4().hex}"
    with InferenceLogWriter(root, "churn", **MANUAL) as writer:
        ids = append(writer, 3, MIDNIGHT + timedelta(hours=5))

    written = write_labels(
        root,
        pd.DataFrame({"request_id": ids[:2], "label": [1, 0], "label_timestamp": [MIDNIGHT + timedelta(days=30)] * 2}),
        day=DAY,
    )

    assert len(written) == 1 and written[0].startswith(
        f"{root.replace('memory://', 'memory:///')}/labels/date=2026-11-10/"
    )
    logged = window(root)
    assert logged["request_id"].tolist() == ids
    assert logged["label"].tolist() == [1, 0, pd.NA]


def test_a_multiclass_models_outputs_are_logged_with_their_types_and_order(tmp_path):
    outputs = {
        "prediction": np.array(["Gentoo", "Adelie", "Chinstrap"], dtype=object),
        "probability": np.array([0.7, 0.5, 0.4]),
        "probability_Adelie": np.array([0.2, 0.5, 0.3]),
        "probability_Chinstrap": np.array([0.1, 0.3, 0.4]),
        "probability_Gentoo": np.array([0.7, 0.2, 0.3]),
    }
    with InferenceLogWriter(tmp_path, "penguins", **MANUAL) as writer:
        ids = append(writer, 3, MIDNIGHT, outputs=outputs)

    logged = window(tmp_path, with_labels=False)

    assert logged.columns.tolist() == [
        "request_id",
        "timestamp",
        "model_name",
        "model_version",
        "tenure_months",
        "plan",
        *outputs,
        "other_version",
        *(f"other_{name}" for name in outputs),
    ]
    assert logged["request_id"].tolist() == ids
    assert logged["prediction"].dtype == object and logged["prediction"].tolist() == ["Gentoo", "Adelie", "Chinstrap"]
    for name in list(outputs)[1:]:
        assert logged[name].dtype == np.float64 and logged[name].tolist() == outputs[name].tolist(), name
    import pyarrow.parquet as pq

    [path] = parquet_files(tmp_path)["date=2026-11-10"]
    assert (
        pq.read_schema(path).metadata[b"inference_log.outputs"]
        == b'["prediction", "probability", "probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]'
    )


def test_a_regression_models_value_is_logged_as_a_float_without_a_probability(tmp_path):
    with InferenceLogWriter(tmp_path, "diabetes", **MANUAL) as writer:
        append(writer, 3, MIDNIGHT, outputs={"prediction": np.array([151.5, 75.0, 206.25])})

    logged = window(tmp_path)

    assert logged.columns.tolist() == [
        "request_id",
        "timestamp",
        "model_name",
        "model_version",
        "tenure_months",
        "plan",
        "prediction",
        "other_version",
        "other_prediction",
        "label",
    ]
    assert logged["prediction"].dtype == np.float64 and logged["prediction"].tolist() == [151.5, 75.0, 206.25]


def test_the_binary_form_of_append_of_earlier_releases_still_logs(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        writer.append(features(2), np.array([0.25, 0.75]), np.array([0, 1]), "3", ["a", "b"], MIDNIGHT)
        with pytest.raises(TypeError, match="mapping"):
            writer.append(features(2), np.array([0.25, 0.75]), np.array([0, 1]), "3", ["a", "b"])

    logged = window(tmp_path)
    assert logged[["probability", "prediction"]].to_dict("list") == {"probability": [0.25, 0.75], "prediction": [0, 1]}
    assert logged["prediction"].dtype == np.int64


def test_a_file_written_before_tasks_existed_reads_as_before(tmp_path):
    # no output metadata: the binary probability and prediction of the old layout
    folder = tmp_path / "predictions" / "date=2026-11-10"
    folder.mkdir(parents=True)
    old = pd.DataFrame(
        {
            "request_id": ["old-0", "old-1"],
            "timestamp": [pd.Timestamp(MIDNIGHT)] * 2,
            "model_name": "churn",
            "model_version": "2",
            "tenure_months": [1.0, 2.0],
            "probability": [0.2, 0.9],
            "prediction": np.array([0, 1], dtype=np.int64),
        }
    )
    old.to_parquet(folder / "20261110T000000-0.parquet", index=False)
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 1, MIDNIGHT + timedelta(hours=1), frame={"tenure_months": np.array([3.0])})

    logged = window(tmp_path)

    assert logged.columns.tolist() == [
        "request_id",
        "timestamp",
        "model_name",
        "model_version",
        "tenure_months",
        "probability",
        "prediction",
        "other_version",
        "other_probability",
        "other_prediction",
        "label",
    ]
    assert logged["request_id"].tolist() == ["old-0", "old-1", "r-0"]
    assert logged["prediction"].dtype == np.int64 and logged["prediction"].tolist() == [0, 1, 0]


def test_outputs_that_cannot_be_stored_are_dropped_and_counted(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        good = append(writer, 2, MIDNIGHT)
        append(
            writer,
            2,
            MIDNIGHT,
            prefix="bad",
            outputs={"prediction": np.array(["a", 3], dtype=object), "probability": np.array([0.5, 0.5])},
        )
        writer.flush()

        assert writer.rows_written == 2 and writer.rows_dropped == 2 and writer.write_errors == 1
    assert window(tmp_path)["request_id"].tolist() == good


LABELS_AS_GIVEN = {
    "strings": (["Adelie", "Gentoo", "yes"], object, ["Adelie", "Gentoo", "yes"]),
    "floats": ([151.0, 75.5, 0.0], np.float64, [151.0, 75.5, 0.0]),
    "integers": ([1, 0, 2], "Int64", [1, 0, 2]),
    "booleans": ([True, False, True], "Int64", [1, 0, 1]),
    "categories": (pd.Categorical(["no", "yes", "no"]), object, ["no", "yes", "no"]),
}


@pytest.mark.parametrize("case", LABELS_AS_GIVEN, ids=list(LABELS_AS_GIVEN))
def test_labels_are_stored_and_read_back_as_given(tmp_path, case):
    given, dtype, expected = LABELS_AS_GIVEN[case]
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        ids = append(writer, 4, MIDNIGHT)
    write_labels(
        tmp_path,
        pd.DataFrame({"request_id": ids[:3], "label": given, "label_timestamp": MIDNIGHT + timedelta(days=1)}),
        day=DAY,
    )

    logged = window(tmp_path)

    assert logged["label"].dtype == dtype
    assert logged["label"].tolist()[:3] == expected
    assert pd.isna(logged["label"].iloc[3])
    if dtype is object:
        assert logged["label"].iloc[3] is None


def test_each_label_keeps_the_type_it_was_stored_with_across_files(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        ids = append(writer, 3, MIDNIGHT)

    def labels(values, at):
        return pd.DataFrame({"request_id": ids[: len(values)], "label": values, "label_timestamp": at})

    write_labels(tmp_path, labels([1, 0, 1], MIDNIGHT + timedelta(days=1)), day=DAY)
    # a float label written later for the first request wins; the others stay integers
    write_labels(tmp_path, labels([0.5], MIDNIGHT + timedelta(days=2)), day=DAY)
    assert window(tmp_path)["label"].tolist() == [0.5, 0.0, 1.0]
    assert window(tmp_path)["label"].dtype == np.float64
    # an integer label written later still: every winner is an integer again
    write_labels(tmp_path, labels([1], MIDNIGHT + timedelta(days=3)), day=DAY)
    logged = window(tmp_path)
    assert logged["label"].dtype == "Int64" and logged["label"].tolist() == [1, 0, 1]
    # text wins for one request: the column holds each label as stored
    write_labels(tmp_path, labels(["yes"], MIDNIGHT + timedelta(days=4)), day=DAY)
    logged = window(tmp_path)
    assert logged["label"].dtype == object and logged["label"].tolist() == ["yes", 0, 1]


# -------------------------------------------------------------------------- reader


def test_the_window_includes_its_start_and_excludes_its_end(tmp_path):
    start = MIDNIGHT + timedelta(hours=6)
    end = start + timedelta(hours=12)
    times = {
        "before": start - timedelta(microseconds=1),
        "at-start": start,
        "inside": start + timedelta(hours=3),
        "just-before-end": end - timedelta(microseconds=1),
        "at-end": end,
    }
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        for name, at in times.items():
            writer.append(features(1), {"probability": [0.5], "prediction": [1]}, "3", [name], at)

    logged = read_window(tmp_path, start, end)

    assert logged["request_id"].tolist() == ["at-start", "inside", "just-before-end"]


def test_only_the_partitions_of_the_window_are_read(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 2, MIDNIGHT)
    other_day = tmp_path / "predictions" / "date=2026-11-12"
    other_day.mkdir(parents=True)
    (other_day / "20261112T000000-0.parquet").write_bytes(b"not parquet at all")

    assert len(window(tmp_path, days=2)) == 2  # 10th and 11th: the broken 12th is never opened
    with pytest.raises(InferenceLogError, match="date=2026-11-12"):
        window(tmp_path, days=3)


def test_labels_join_by_request_id_and_the_latest_label_wins(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        ids = append(writer, 4, MIDNIGHT + timedelta(hours=1))
    label_time = MIDNIGHT + timedelta(days=30)

    def labels(rows: dict[str, int], at: datetime) -> pd.DataFrame:
        return pd.DataFrame(
            {"request_id": list(rows), "label": list(rows.values()), "label_timestamp": [at] * len(rows)}
        )

    write_labels(tmp_path, labels({ids[0]: 1, ids[1]: 0}, label_time), day=DAY)
    # a correction that arrives later wins; a stale label written after it (older label time) does not
    write_labels(tmp_path, labels({ids[1]: 1}, label_time + timedelta(days=1)), day=DAY)
    write_labels(tmp_path, labels({ids[1]: 0}, label_time - timedelta(days=1)), day=DAY)
    # a label for a request that is not in the log changes nothing
    write_labels(tmp_path, labels({"unknown": 1}, label_time), day=DAY)

    logged = window(tmp_path)

    assert logged["label"].dtype == "Int64"
    assert logged["request_id"].tolist() == ids
    assert logged["label"].tolist() == [1, 1, pd.NA, pd.NA]
    assert "label" not in window(tmp_path, with_labels=False).columns


def test_labels_may_name_the_prediction_day_of_each_row(tmp_path):
    second_day = MIDNIGHT + timedelta(days=1, hours=3)
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        first = append(writer, 2, MIDNIGHT + timedelta(hours=3), prefix="a")
        second = append(writer, 2, second_day, prefix="b")
    labels = pd.DataFrame(
        {
            "request_id": first + second,
            "label": [True, False, True, True],
            "label_timestamp": pd.Timestamp("2026-12-15T00:00:00Z"),
            "prediction_day": [DAY, DAY, "2026-11-11", "2026-11-11"],
        }
    )

    written = write_labels(tmp_path, labels)

    assert [Path(path).parent.name for path in written] == ["date=2026-11-10", "date=2026-11-11"]
    assert window(tmp_path, days=2)["label"].tolist() == [1, 0, 1, 1]


@pytest.mark.parametrize(
    "labels, day, message",
    [
        (pd.DataFrame({"request_id": ["a"], "label": [1]}), DAY, "label_timestamp"),
        (pd.DataFrame({"request_id": ["a"], "label": [1], "label_timestamp": [MIDNIGHT]}), None, "prediction_day"),
        (
            pd.DataFrame({"request_id": ["a"], "label": [1], "label_timestamp": [datetime(2026, 12, 1)]}),
            DAY,
            "timezone",
        ),
        (
            pd.DataFrame({"request_id": ["a", "b"], "label": [1, None], "label_timestamp": [MIDNIGHT] * 2}),
            DAY,
            "missing in rows 1",
        ),
        (
            pd.DataFrame({"request_id": ["a", "b"], "label": ["yes", 1], "label_timestamp": [MIDNIGHT] * 2}),
            DAY,
            "mixes text",
        ),
        (pd.DataFrame({"request_id": ["a"], "label": [float("inf")], "label_timestamp": [MIDNIGHT]}), DAY, "finite"),
        (pd.DataFrame({"request_id": ["a"], "label": [[1]], "label_timestamp": [MIDNIGHT]}), DAY, "label must hold"),
        (pd.DataFrame({"request_id": [7], "label": [1], "label_timestamp": [MIDNIGHT]}), DAY, "request_id"),
        (
            pd.DataFrame({"request_id": ["a"], "label": [1], "label_timestamp": [MIDNIGHT], "prediction_day": [DAY]}),
            DAY,
            "not both",
        ),
        (
            pd.DataFrame(
                {"request_id": ["a"], "label": [1], "label_timestamp": [MIDNIGHT], "prediction_day": ["last tuesday"]}
            ),
            None,
            "prediction_day",
        ),
    ],
)
def test_write_labels_refuses_bad_labels(tmp_path, labels, day, message):
    with pytest.raises(ValueError, match=message):
        write_labels(tmp_path, labels, day=day)
    assert not (tmp_path / "labels").exists()


def test_an_empty_window_is_an_empty_frame_with_the_logs_columns(tmp_path):
    logged = window(tmp_path / "never-written")

    assert logged.empty
    assert logged.dtypes.astype(str).to_dict() == {
        "request_id": "object",
        "timestamp": "datetime64[ns, UTC]",
        "model_name": "object",
        "model_version": "object",
        "probability": "float64",
        "prediction": "int64",
        "other_version": "object",
        "other_probability": "float64",
        "other_prediction": "Int64",
        "label": "Int64",
    }
    assert "label" not in window(tmp_path, with_labels=False).columns


def test_a_window_with_files_but_no_rows_in_range_keeps_the_feature_columns(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 2, MIDNIGHT + timedelta(hours=20))

    logged = read_window(tmp_path, MIDNIGHT, MIDNIGHT + timedelta(hours=1))

    assert logged.empty
    assert {"tenure_months", "plan", "label"} <= set(logged.columns)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a log file"])
def test_a_damaged_file_raises_an_error_naming_it(tmp_path, damage):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        append(writer, 20, MIDNIGHT)
    [path] = parquet_files(tmp_path)["date=2026-11-10"]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    else:
        pd.DataFrame({"x": [1]}).to_parquet(path)

    with pytest.raises(InferenceLogError) as failed:
        window(tmp_path)

    assert str(path) in str(failed.value)


def test_a_corrupt_labels_file_is_reported_too(tmp_path):
    with InferenceLogWriter(tmp_path, "churn", **MANUAL) as writer:
        ids = append(writer, 1, MIDNIGHT)
    [written] = write_labels(
        tmp_path, pd.DataFrame({"request_id": ids, "label": [1], "label_timestamp": [MIDNIGHT]}), day=DAY
    )
    Path(written).write_bytes(b"PAR1")

    with pytest.raises(InferenceLogError, match=re.escape(written)):
        window(tmp_path)
    assert len(window(tmp_path, with_labels=False)) == 1


@pytest.mark.parametrize(
    "start, end, message",
    [
        (datetime(2026, 11, 10), MIDNIGHT, "timezone"),
        (MIDNIGHT, MIDNIGHT, "not after start"),
        (DAY, MIDNIGHT, "datetime"),
    ],
)
def test_read_window_refuses_a_bad_window(tmp_path, start, end, message):
    with pytest.raises(ValueError, match=message):
        read_window(tmp_path, start, end)
