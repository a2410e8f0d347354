"""The inference log: every prediction the server made, and the labels that arrive later.

Layout under ``root``, a local folder or any fsspec URL (``s3://bucket/prefix``,
``gs://...``, ``memory://...``)::

    <root>/predictions/date=YYYY-MM-DD/<YYYYmmddTHHMMSS>-<uuid>.parquet
    <root>/labels/date=YYYY-MM-DD/<YYYYmmddTHHMMSS>-<uuid>.parquet

``predictions`` files hold one row per predicted row: ``request_id`` (str, unique per
row), ``timestamp`` (the event time, UTC), ``model_name``, ``model_version`` (str),
every feature column as the model received it (numbers float64, categoricals str),
then every output column the model answered with
(:func:`include.training.model.output_columns`):

- ``probability`` (float64) when the model gives one: P(positive class) for a binary
  model, the predicted class's for a multiclass one;
- ``prediction``, typed by the task: int64 (a binary label 0/1), str (a multiclass
  class name) or float64 (a regression value);
- ``probability_<class>`` (float64), one per class of a multiclass model.

``model_version`` is the version that *answered* the row. During a rollout the other model's
outputs follow (:mod:`include.serving.rollout`): ``other_version`` (str, null when the other model
did not score the row) and ``other_<column>`` for every output column (typed as the column; null
when not computed). In shadow mode they hold the candidate's outputs for the rows the champion
answered; in canary mode, and without a rollout, they are null. The file's metadata key
``inference_log.other_outputs`` lists the columns it holds as ``other_<column>``; a file written
before rollouts existed has neither, and :func:`read_window` returns those columns as null for it.

The file's Parquet metadata (key ``inference_log.outputs``) lists its output columns
in order, so a reader tells them from the features; a file without it (written before
tasks existed) holds the binary ``probability`` and ``prediction``. The partition is
the UTC day of ``timestamp``; the file name starts with the UTC time the file was written.

``labels`` files hold ``request_id``, ``label`` and ``label_timestamp`` (when the label
became known, UTC). Labels are stored as the user gave them, one Parquet type per
file: int64 (integers; booleans as 0/1), float64 or str (``"yes"``, ``"Adelie"``);
the drift check types them for the task with :func:`include.data.cast.target_array`.
A label is stored in the partition of the *prediction* it labels, not of the day it
arrived, so a window's labels lie next to its predictions and :func:`read_window`
reads only the days of the window. A later label for the same request overrides an
earlier one (the latest ``label_timestamp`` wins).

Files are immutable: every flush adds new files and nothing is rewritten, so readers
need no lock. A file appears whole or not at all: on a local disk it is written
under a hidden temporary name and renamed; on an object store a single PUT is atomic.

Modules: :mod:`~include.monitoring.inference_log.store` (the layout and the storage
under ``root``), :mod:`~include.monitoring.inference_log.writer` (the server's
buffered writer), :mod:`~include.monitoring.inference_log.encode` (its rows as
Parquet files), :mod:`~include.monitoring.inference_log.labels` (label files) and
:mod:`~include.monitoring.inference_log.reader` (a window with its labels). Import
the public names from this package.
"""

from include.monitoring.inference_log import store
from include.monitoring.inference_log.labels import write_labels
from include.monitoring.inference_log.reader import read_window

# the file contract's names (columns, partitions, the error), as the store lists them
from include.monitoring.inference_log.store import *  # noqa: F403
from include.monitoring.inference_log.writer import (
    DEFAULT_FLUSH_ROWS,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_RETAINED_ROWS,
    InferenceLogWriter,
    check_flush_settings,
)

__all__ = [
    "DEFAULT_FLUSH_ROWS",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_MAX_RETAINED_ROWS",
    "InferenceLogWriter",
    "check_flush_settings",
    "read_window",
    "write_labels",
]
__all__ += store.__all__
