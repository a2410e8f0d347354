"""The retraining decision: each rule, each guard, their order, and failing closed."""

from __future__ import annotations

import math
from datetime import date, datetime

import pytest

from include.monitoring.decision import RetrainDecision, decide

WINDOW = {"window_start": date(2024, 3, 10), "window_end": date(2024, 3, 11)}
CALM = {
    "active_training_runs": 0,
    "last_trigger_window_end": None,
    "cooldown_days": 7,
    "is_backfill": False,
    "allow_backfill": False,
}
THRESHOLDS = {"drift_share_threshold": 0.3, "performance_drop_threshold": 0.05}
COLUMNS = {name: {} for name in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")}


def metrics(drift_share=0.0, performance_drop=None, **extra):
    countable = isinstance(drift_share, float) and math.isfinite(drift_share)
    drifted = list(COLUMNS)[: round(drift_share * 10)] if countable else []
    result = {
        "status": "ok",
        "drift_share": drift_share,
        "drifted_columns": drifted,
        "columns": COLUMNS,
        "performance_drop": performance_drop,
        "metric": "roc_auc",
        "score": None,
        "reference_score": None,
    }
    if performance_drop is not None:
        result.update(score=0.85 - performance_drop, reference_score=0.85)
    return {**result, **extra}


def run(result, **overrides):
    return decide(result, **{**THRESHOLDS, **CALM, **WINDOW, **overrides})


def test_no_drift_below_both_thresholds_says_both_numbers():
    decision = run(metrics(0.1, performance_drop=0.01))

    assert decision == RetrainDecision(False, "no_drift", decision.reason)
    assert "drift share 0.10 < threshold 0.30 (1 of 10 columns: a)" in decision.reason
    assert "roc_auc drop 0.010 < threshold 0.050 (roc_auc 0.850 -> 0.840)" in decision.reason
    assert decision.to_dict() == {"retrain": False, "outcome": "no_drift", "reason": decision.reason}


def test_drift_share_at_the_threshold_retrains():
    decision = run(metrics(0.3))

    assert (decision.retrain, decision.outcome) == (True, "retrain")
    assert "drift share 0.30 >= threshold 0.30 (3 of 10 columns: a, b, c)" in decision.reason
    assert "roc_auc drop" not in decision.reason


def test_a_performance_drop_alone_retrains_and_missing_labels_never_do():
    decision = run(metrics(0.0, performance_drop=0.08))
    assert decision.outcome == "retrain"
    assert decision.reason.startswith("roc_auc drop 0.080 >= threshold 0.050 (roc_auc 0.850 -> 0.770)")

    unmeasured = run(metrics(0.0, performance_note="not measured: 12 labelled row(s) in the window, fewer than 50"))
    assert unmeasured.outcome == "no_drift"
    assert "performance not measured (not measured: 12 labelled row(s)" in unmeasured.reason
    assert run(metrics(0.0, performance_drop=float("nan"))).outcome == "no_drift"


def test_insufficient_data_is_skipped_before_anything_else():
    result = {
        "status": "insufficient_data",
        "rows": 12,
        "reason": "the window holds 12 served prediction(s), fewer than min_rows=100",
    }
    # even with every guard also tripping, the first rule decides
    decision = run(result, active_training_runs=2, is_backfill=True, last_trigger_window_end=WINDOW["window_end"])

    assert decision == RetrainDecision(
        False,
        "skipped",
        "insufficient data in window 2024-03-10..2024-03-11 "
        "(12 rows): the window holds 12 served prediction(s), "
        "fewer than min_rows=100",
    )


@pytest.mark.parametrize("drift_share", [None, float("nan"), "n/a", True])
def test_a_missing_or_nan_drift_share_fails_closed(drift_share):
    with pytest.raises(
        ValueError, match="no usable drift_share.*refusing to call window 2024-03-10..2024-03-11 undrifted"
    ):
        run(metrics(drift_share, performance_drop=0.0))
    without = {key: value for key, value in metrics().items() if key != "drift_share"}
    with pytest.raises(ValueError, match="no usable drift_share"):
        run(without)


def test_a_backfill_does_not_retrain_unless_allowed():
    skipped = run(metrics(0.6), is_backfill=True)
    assert (skipped.retrain, skipped.outcome) == (False, "skipped")
    assert skipped.reason.startswith("drift share 0.60 >= threshold 0.30")
    assert "run belongs to a backfill; set allow_backfill_retrain to retrain from backfills" in skipped.reason

    assert run(metrics(0.6), is_backfill=True, allow_backfill=True).outcome == "retrain"
    # a backfill that finds no drift is plain no_drift, not a skip
    assert run(metrics(0.0), is_backfill=True).outcome == "no_drift"


def test_an_active_training_run_blocks_a_second_one():
    decision = run(metrics(0.6), active_training_runs=1)

    assert decision.outcome == "skipped"
    assert "ml_training already queued/running (1 active run(s))" in decision.reason
    # the backfill guard comes first
    assert "backfill" in run(metrics(0.6), active_training_runs=1, is_backfill=True).reason


def test_the_window_that_triggered_decides_the_same_again():
    # a retry must be able to create the run a crashed first attempt never created; the
    # trigger's fixed run id per window keeps it from creating a second one
    decision = run(metrics(0.6), last_trigger_window_end=date(2024, 3, 11), cooldown_days=7)

    assert decision.outcome == "retrain"
    assert "this window decided so before" in decision.reason
    # training already running is reported before the cooldown
    assert (
        "queued/running" in run(metrics(0.6), last_trigger_window_end=date(2024, 3, 11), active_training_runs=1).reason
    )


@pytest.mark.parametrize(
    "last_end, outcome",
    [
        (date(2024, 3, 5), "skipped"),  # 5 days before this window: within 7 days
        (date(2024, 3, 3), "retrain"),  # this window starts exactly when the cooldown ends
        (date(2024, 3, 15), "skipped"),  # a later window triggered (a backfill walks back): still within 7 days
        (date(2024, 3, 17), "skipped"),  # ends 6 days after this window ends: within
        (date(2024, 3, 18), "retrain"),  # ends 7 days after this window ends: the cooldown is over
    ],
)
def test_cooldown_in_data_time_both_directions(last_end, outcome):
    decision = run(metrics(0.6), last_trigger_window_end=last_end, cooldown_days=7)

    assert decision.outcome == outcome, decision.reason
    if outcome == "skipped":
        assert f"retraining triggered from window ending {last_end}, within cooldown of 7 days" in decision.reason


def test_zero_cooldown_allows_every_other_window():
    assert run(metrics(0.6), last_trigger_window_end=date(2024, 3, 10), cooldown_days=0).outcome == "retrain"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"drift_share_threshold": 0}, "drift_share_threshold must be a finite number > 0"),
        ({"drift_share_threshold": 1.5}, "must be <= 1"),
        ({"performance_drop_threshold": math.inf}, "performance_drop_threshold must be a finite number > 0"),
        ({"active_training_runs": -1}, "active_training_runs must be an integer >= 0"),
        ({"cooldown_days": 1.5}, "cooldown_days must be an integer >= 0"),
        ({"window_start": date(2024, 3, 11)}, "window_start 2024-03-11 must be before window_end 2024-03-11"),
        ({"window_end": datetime(2024, 3, 11)}, "window_end must be a datetime.date"),
        ({"last_trigger_window_end": "2024-03-01"}, "last_trigger_window_end must be a datetime.date"),
    ],
)
def test_bad_arguments_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        run(metrics(0.6), **overrides)
    with pytest.raises(ValueError, match="a mapping"):
        run(None)
