"""Case 2: a bad batch lands; ml_training runs on it.

Fault: one day's partition is the training window, and it is broken in one way: null-heavy,
a numeric column arriving as strings, an unseen category beyond the suite's 1% tolerance, a
duplicated primary key, an empty file (the schema, no rows), a truncated or zero-byte Parquet file.
Expected: ``validate`` fails and its log lists each failed expectation (a file that is not
readable Parquet fails ``snapshot`` instead, naming the file), with no retry: bad data stays bad.
State checked: ``train`` never ran, no MLflow training run and no model version was created,
the aliases did not move, and the GX result of a failed validation is kept on disk.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.reliability.conftest import LAST_DAY, run_dag

pytestmark = pytest.mark.reliability

FAULTS = {
    # fault: (how the day's rows are broken, what the log must name)
    "null_heavy_batch": [
        "expect_column_values_to_not_be_null on column 'tenure_months'",
        "expect_column_values_to_not_be_null on column 'monthly_charges'",
    ],
    "wrong_dtype": ["expect_column_values_to_be_between on column 'tenure_months'"],
    "unseen_category_beyond_tolerance": ["expect_column_values_to_be_in_set on column 'plan'", "enterprise"],
    "duplicated_primary_key": ["expect_column_values_to_be_unique on column 'customer_id'"],
    "empty_file": ["expect_table_row_count_to_be_between: observed 0"],
    "truncated_parquet": ["cannot be read as parquet"],
    "zero_byte_file": ["cannot be read as parquet"],
}
UNREADABLE = ("truncated_parquet", "zero_byte_file")


def _write_bad_day(spec, day, fault: str) -> Path:
    from include.data.partitions import to_parquet_bytes
    from include.simulation.generate import generate_day

    frame = generate_day(spec, day, 250, seed=11)
    if fault == "null_heavy_batch":
        frame.loc[frame.sample(frac=0.3, random_state=1).index, ["tenure_months", "monthly_charges"]] = None
    elif fault == "wrong_dtype":
        frame["tenure_months"] = frame["tenure_months"].map(lambda months: f"{months:.0f} months")
    elif fault == "unseen_category_beyond_tolerance":
        frame.loc[frame.sample(frac=0.05, random_state=2).index, "plan"] = "enterprise"
    elif fault == "duplicated_primary_key":
        frame.loc[frame.index[-20:], "customer_id"] = frame["customer_id"].iloc[:20].to_numpy()
    elif fault == "empty_file":
        frame = frame.iloc[0:0]
    payload = to_parquet_bytes(frame)
    if fault == "truncated_parquet":
        payload = payload[: len(payload) // 2]
    elif fault == "zero_byte_file":
        payload = b""
    folder = Path(spec.location) / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.parquet").write_bytes(payload)
    return folder


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_batch_stops_before_training(stack, fault, request):
    # each fault on a day of its own, after the landed history
    day = LAST_DAY + timedelta(days=1 + list(FAULTS).index(fault))
    folder = _write_bad_day(stack.spec, day, fault)
    runs_before, versions_before, aliases_before = len(stack.training_runs()), stack.versions(), stack.aliases()
    try:
        result = run_dag(
            stack,
            "ml_training",
            request,
            run_conf={
                "model_type": "sklearn_hgb",
                "epochs": 2,
                "training_window_days": 1,
                "training_window_end": day.isoformat(),
                "reason": f"bad batch: {fault}",
            },
        )
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()

    failed_step = "snapshot" if fault in UNREADABLE else "validate"
    assert result.states[failed_step] == "failed", result.states
    assert result.tries[failed_step] == 1, "bad data was retried"
    assert result.states["train"] in ("upstream_failed", "None"), result.states
    for expected in FAULTS[fault]:
        assert expected in result.output, f"the log does not say {expected!r}"
    if failed_step == "validate":
        assert "Great Expectations validation FAILED" in result.output
        kept = list(stack.settings.path("validation", stack.spec.name).glob("*.json"))
        assert kept, "the failed validation's GX result was not kept"
    else:
        assert f"date={day.isoformat()}" in result.output, "the error does not name the broken file"

    assert len(stack.training_runs()) == runs_before, "a training run started on a bad batch"
    assert stack.versions() == versions_before
    assert stack.aliases() == aliases_before
