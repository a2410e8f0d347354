"""The train / held-out split, shared by training and evaluation.

Time-ordered: the latest rows of a snapshot are held out, as they would be in
production, and the split depends only on the snapshot's content, so the
challenger and the champion are scored on exactly the same rows.
"""

from __future__ import annotations

import pandas as pd

from include.data.spec import DatasetSpec

HOLDOUT_FRACTION = 0.2


def holdout_split(
    frame: pd.DataFrame, spec: DatasetSpec, holdout_fraction: float = HOLDOUT_FRACTION
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` by time: the earliest rows train, the latest ``holdout_fraction`` are held out.

    Rows are ordered by timestamp, then id. Returns ``(train, held_out)``, two DataFrames with a
    fresh 0..n-1 index. Raises ``ValueError`` when ``holdout_fraction`` is not in (0, 1) or the
    frame has fewer than 10 rows.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if len(frame) < 10:
        raise ValueError(f"need at least 10 rows to split into train and held-out, got {len(frame)}")
    ordered = frame.sort_values([spec.timestamp_column, spec.id_column], kind="mergesort").reset_index(drop=True)
    cut = int(round(len(ordered) * (1 - holdout_fraction)))
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)
