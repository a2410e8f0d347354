"""The lineage tags of a model version: one writer and one parser (DatasetRef.to_tags / from_tags)."""

from __future__ import annotations

import pytest

from include.data.versioning import LINEAGE_TAGS, DatasetRef, LineageError

REF = DatasetRef(
    repo="/registry",
    path="snapshots/churn/2026-03-01_2026-03-17.parquet",
    md5="a" * 32,
    rev="b" * 40,
    rows=4000,
    window_start="2026-03-01",
    window_end="2026-03-17",
)


def test_tags_round_trip_to_the_same_snapshot():
    tags = REF.to_tags()
    assert set(tags) == set(LINEAGE_TAGS) and tags["data.window"] == "2026-03-01..2026-03-17"
    assert all(isinstance(value, str) for value in tags.values())
    assert DatasetRef.from_tags({**tags, "gate.passed": "true"}) == REF


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data.md5": ""}, "lacks lineage tag.*data.md5"),
        ({"data.window": "2026-03-01"}, "not 'YYYY-MM-DD..YYYY-MM-DD'"),
        ({"data.window": "2026-03-01..someday"}, "not 'YYYY-MM-DD..YYYY-MM-DD'"),
        ({"data.rows": "many"}, "rows must be an integer"),
    ],
)
def test_broken_tags_name_what_is_wrong(change, message):
    with pytest.raises(LineageError, match=message):
        DatasetRef.from_tags({**REF.to_tags(), **change})
