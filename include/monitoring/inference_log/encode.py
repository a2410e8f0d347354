"""Buffered prediction rows turned into predictions files: one Parquet file per UTC day per column layout.

The writer hands over the batches of several ``append`` calls at once; a model reload
may change the features between two of them, so batches are grouped by their column
names and types, and each group becomes one table split by the day of its rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from include.monitoring.inference_log.store import (
    _EPOCH,
    _NS_PER_DAY,
    OTHER_OUTPUTS_METADATA_KEY,
    OTHER_PREFIX,
    OTHER_VERSION_COLUMN,
    OUTPUTS_METADATA_KEY,
    PREDICTION,
    PREDICTIONS,
    _file_name,
    _parquet_bytes,
    _Store,
)


@dataclass(frozen=True, slots=True)
class Batch:
    """The rows of one append() call, kept by reference until the next flush."""

    features: Any  # a DataFrame or a mapping of column name to a 1-D array
    outputs: Mapping[str, Any]  # output column name -> one value per row
    model_version: str
    request_ids: Sequence[str]
    timestamps: int | np.ndarray  # epoch ns: one for all rows, or one per row
    rows: int
    other_version: str | None = None  # a rollout's shadow candidate, which scored the same rows
    other_outputs: Mapping[str, Any] | None = None  # its output columns


@dataclass(frozen=True, slots=True)
class EncodedFile:
    """A file ready to be written; its name is fixed so that a retry never writes it twice."""

    path: str
    payload: bytes
    rows: int


# a batch with its feature, output and other model's output columns as arrays
_Member = tuple[Batch, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]


def encode(
    batches: list[Batch], store: _Store, model_name: str, drop: Callable[[Batch, Exception], None]
) -> list[EncodedFile]:
    """The predictions files that hold ``batches``, under ``store``'s partitions; ``model_name`` fills that column.

    Returns one :class:`EncodedFile` per UTC day per column layout, the layouts in the
    order they first occur, each holding its rows in append order. A batch that cannot
    be stored as Parquet (say a column mixing strings and numbers) is handed to
    ``drop`` with the error and left out, and the other batches of its layout are
    still encoded together; raises nothing of its own.
    """
    groups: dict[tuple, list[_Member]] = {}
    for batch in batches:
        try:
            columns = _columns_of(batch.features)
            outputs = _outputs_of(batch.outputs)
            others = _outputs_of(batch.other_outputs) if batch.other_outputs is not None else {}
            layout = (
                tuple(columns),
                tuple([values.dtype for values in columns.values()]),
                tuple(outputs),
                tuple([values.dtype for values in outputs.values()]),
                tuple(others),
                tuple([values.dtype for values in others.values()]),
            )
        except Exception as exc:
            drop(batch, exc)
            continue
        groups.setdefault(layout, []).append((batch, columns, outputs, others))
    encoded = []
    for members in groups.values():
        try:
            encoded.extend(_encode_group(members, store, model_name))
        except Exception as exc:
            if len(members) == 1:
                drop(members[0][0], exc)
                continue
            # find the batches at fault, then write the others together as usual
            storable, one_by_one = [], []
            for member in members:
                try:
                    one_by_one.extend(_encode_group([member], store, model_name))
                except Exception as member_exc:
                    drop(member[0], member_exc)
                else:
                    storable.append(member)
            try:
                encoded.extend(_encode_group(storable, store, model_name) if storable else [])
            except Exception:
                encoded.extend(one_by_one)
    return encoded


def _columns_of(features: Any) -> dict[str, np.ndarray]:
    if isinstance(features, pd.DataFrame):
        return {str(name): column.to_numpy() for name, column in features.items()}
    return {
        str(name): values if type(values) is np.ndarray else np.asarray(values) for name, values in features.items()
    }


def _outputs_of(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The output columns typed as the log stores them; raises for values that cannot be."""
    typed = {}
    for name, values in outputs.items():
        array = values if type(values) is np.ndarray else np.asarray(values)
        if name != PREDICTION:
            typed[name] = array.astype(np.float64, copy=False)
        elif array.dtype.kind in "iub":
            typed[name] = array.astype(np.int64, copy=False)
        elif array.dtype.kind == "f":
            typed[name] = array.astype(np.float64, copy=False)
        elif array.dtype.kind in "OU":
            typed[name] = array.astype(object, copy=False)
        else:
            raise TypeError(
                f"the output column {PREDICTION!r} holds {array.dtype} values: the log stores "
                "integer labels, numbers or class names"
            )
    return typed


def _arrow_type(name: str, values: np.ndarray):
    import pyarrow as pa

    if name != PREDICTION or values.dtype.kind == "f":
        return pa.float64()
    return pa.int64() if values.dtype.kind == "i" else pa.string()


def _encode_group(members: list[_Member], store: _Store, model_name: str) -> list[EncodedFile]:
    import pyarrow as pa

    batches = [member[0] for member in members]
    counts = np.fromiter((batch.rows for batch in batches), dtype=np.int64, count=len(batches))
    if all(isinstance(batch.timestamps, int) for batch in batches):
        stamps = np.repeat(np.array([batch.timestamps for batch in batches], dtype=np.int64), counts)
    else:
        stamps = np.concatenate(
            [
                np.full(batch.rows, batch.timestamps, dtype=np.int64)
                if isinstance(batch.timestamps, int)
                else batch.timestamps
                for batch in batches
            ]
        )
    request_ids: list[str] = []
    for batch in batches:
        request_ids.extend(batch.request_ids)
    versions = np.repeat(np.array([batch.model_version for batch in batches], dtype=object), counts)
    arrays = {
        "request_id": pa.array(request_ids, type=pa.string()),
        "timestamp": pa.array(stamps, type=pa.timestamp("ns", tz="UTC")),
        "model_name": pa.array(np.full(len(stamps), model_name, dtype=object), type=pa.string()),
        "model_version": pa.array(versions, type=pa.string()),
    }
    for name in members[0][1]:
        values = np.concatenate([member[1][name] for member in members])
        array = pa.array(values, from_pandas=values.dtype == object)
        if array.type == pa.null():  # a categorical feature null in every row is still text
            array = array.cast(pa.string())
        arrays[name] = array
    outputs = list(members[0][2])
    for name in outputs:
        values = np.concatenate([member[2][name] for member in members])
        arrays[name] = pa.array(values, type=_arrow_type(name, values))
    # every member of a group has the same other columns, or none (the layout says so)
    others = members[0][3]
    other_names = outputs + [name for name in others if name not in outputs]
    arrays[OTHER_VERSION_COLUMN] = pa.array(
        np.repeat(np.array([batch.other_version for batch in batches], dtype=object), counts), type=pa.string()
    )
    for name in other_names:
        if name in others:
            values = np.concatenate([member[3][name] for member in members])
            arrays[OTHER_PREFIX + name] = pa.array(values, type=_arrow_type(name, values))
        else:  # not computed: null, typed as the answering model's column
            arrays[OTHER_PREFIX + name] = pa.nulls(len(stamps), type=arrays[name].type)
    table = pa.table(arrays).replace_schema_metadata(
        {
            OUTPUTS_METADATA_KEY: json.dumps(outputs).encode(),
            OTHER_OUTPUTS_METADATA_KEY: json.dumps(other_names).encode(),
        }
    )

    days = stamps // _NS_PER_DAY
    day_numbers = np.unique(days)
    files = []
    for day_number in day_numbers:
        day = (_EPOCH + timedelta(days=int(day_number))).date()
        part = table if len(day_numbers) == 1 else table.filter(pa.array(days == day_number))
        path = f"{store.partition(PREDICTIONS, day)}/{_file_name()}"
        files.append(EncodedFile(path, _parquet_bytes(part), part.num_rows))
    return files
