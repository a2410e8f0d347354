"""The rollout decision on synthetic inference-log rows, and on a real model of public data (paired shadow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from include.data.rollout_spec import Guardrails, RolloutSpec
from include.rollout.decision import GuardrailReadings, RolloutState, decide

START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = START + timedelta(hours=6)
SLICES = ("basic", "standard", "premium")


@pytest.fixture
def churn_spec(spec):
    return spec


def _scores(labels: np.ndarray, strength: float, rng) -> np.ndarray:
    return 1 / (1 + np.exp(-(strength * (2 * labels - 1) + rng.normal(0, 1, len(labels)))))


def _rows(
    n: int, *, champion: float, candidate: float, seed: int = 0, weak_slice: str | None = None, weak: float = 0.3
) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    plans = rng.choice(SLICES, n)
    strength = np.where(plans == weak_slice, weak, candidate) if weak_slice else np.full(n, candidate)
    return {
        "labels": labels,
        "plans": plans,
        "champion": _scores(labels, champion, rng),
        "candidate": 1 / (1 + np.exp(-(strength * (2 * labels - 1) + rng.normal(0, 1, n)))),
        "times": START + pd.to_timedelta(np.linspace(60, 5 * 3600, n), unit="s"),
    }


def shadow_frame(n: int, labelled: float = 1.0, **kwargs) -> pd.DataFrame:
    rows = _rows(n, **kwargs)
    label = pd.array(rows["labels"], dtype="Int64")
    label[int(n * labelled) :] = pd.NA
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": rows["times"],
            "model_version": "1",
            "plan": rows["plans"],
            "probability": rows["champion"],
            "prediction": (rows["champion"] > 0.5).astype(int),
            "other_version": "2",
            "other_probability": rows["candidate"],
            "other_prediction": (rows["candidate"] > 0.5).astype(int),
            "label": label,
        }
    )


def canary_frame(n: int, share: float, **kwargs) -> pd.DataFrame:
    rows = _rows(n, **kwargs)
    rng = np.random.default_rng(99)
    to_candidate = rng.random(n) < share
    probability = np.where(to_candidate, rows["candidate"], rows["champion"])
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": rows["times"],
            "model_version": np.where(to_candidate, "2", "1"),
            "plan": rows["plans"],
            "probability": probability,
            "prediction": (probability > 0.5).astype(int),
            "other_version": None,
            "label": pd.array(rows["labels"], dtype="Int64"),
        }
    )


SHADOW = RolloutState("2", "1", "shadow", START)
RULES = RolloutSpec(mode="shadow", min_labelled_rows=200)


def test_a_better_candidate_in_shadow_is_promoted(spec):
    decision = decide(shadow_frame(3000, champion=0.8, candidate=1.3), spec, RULES, SHADOW, NOW)
    assert decision.action == "promote", decision.reason
    overall = decision.numbers["overall"]
    assert overall["difference"] > 0 and overall["low"] > -RULES.margin
    assert set(decision.numbers["slices"]) == set(SLICES)
    assert "roc_auc" in decision.reason and "CI" in decision.reason


def test_a_worse_candidate_in_shadow_is_rolled_back(spec):
    decision = decide(shadow_frame(3000, champion=1.3, candidate=0.6), spec, RULES, SHADOW, NOW)
    assert decision.action == "rollback", decision.reason
    assert decision.numbers["overall"]["high"] < -RULES.margin


def test_too_few_labels_continue_even_for_a_clearly_worse_candidate(spec):
    frame = shadow_frame(1000, labelled=0.1, champion=1.3, candidate=0.2)
    decision = decide(frame, spec, RULES, SHADOW, NOW)
    assert decision.action == "continue"
    assert decision.numbers["labelled_rows"] == {"candidate": 100, "champion": 100}
    assert "200 needed" in decision.reason


def test_a_regression_on_one_slice_rolls_back_although_the_whole_is_better(spec):
    frame = shadow_frame(6000, champion=0.8, candidate=1.8, weak_slice="premium")
    decision = decide(frame, spec, RULES, SHADOW, NOW)
    assert decision.action == "rollback", decision.reason
    assert "plan=premium" in decision.reason
    assert decision.numbers["slices"]["premium"]["high"] < -RULES.margin


def test_a_small_slice_is_reported_not_decided(spec):
    frame = shadow_frame(3000, champion=0.8, candidate=1.3)
    frame.loc[frame.index[:20], "plan"] = "enterprise"
    decision = decide(frame, spec, RULES, SHADOW, NOW)
    assert decision.numbers["slices"]["enterprise"]["decided"] is False
    assert decision.action == "promote"


@pytest.mark.parametrize(
    ("readings", "words"),
    [
        (GuardrailReadings(requests=500, error_rate=0.05), "error rate 5.00%"),
        (GuardrailReadings(requests=500, error_rate=0.0, p99_latency_ms=900.0), "p99 latency 900 ms"),
    ],
)
def test_a_broken_serving_guardrail_rolls_back_before_any_label(spec, readings, words):
    frame = shadow_frame(500, labelled=0.0, champion=1.0, candidate=1.0)
    decision = decide(frame, spec, RULES, SHADOW, NOW, readings)
    assert decision.action == "rollback" and words in decision.reason


def test_a_serving_guardrail_waits_for_enough_requests(spec):
    frame = shadow_frame(500, labelled=0.0, champion=1.0, candidate=1.0)
    decision = decide(frame, spec, RULES, SHADOW, NOW, GuardrailReadings(requests=10, error_rate=0.5))
    assert decision.action == "continue"


def test_a_prediction_gap_rolls_back_before_any_label(spec):
    frame = shadow_frame(500, labelled=0.0, champion=1.0, candidate=1.0)
    frame["other_probability"] = np.clip(frame["other_probability"] + 0.3, 0, 1)
    decision = decide(frame, spec, RULES, SHADOW, NOW)
    assert decision.action == "rollback" and "prediction gap" in decision.reason
    assert decision.numbers["guardrails"]["prediction_gap"] > 0.15


def test_an_undecided_rollout_is_rolled_back_at_its_maximum_duration(spec):
    frame = shadow_frame(1000, labelled=0.1, champion=1.0, candidate=1.0)
    late = START + timedelta(hours=RULES.max_duration_hours + 1)
    decision = decide(frame, spec, RULES, SHADOW, late)
    assert decision.action == "rollback"
    assert "no decision within the maximum duration of 72 h" in decision.reason


def test_a_canary_steps_through_its_shares_then_promotes(spec):
    rules = RolloutSpec(mode="canary", min_labelled_rows=200, canary_steps=(0.05, 0.25, 1.0))
    frame = canary_frame(20000, 0.25, champion=0.8, candidate=1.3)
    first = RolloutState("2", "1", "canary", START, 0.05, rules.canary_steps, START)
    decision = decide(frame, spec, rules, first, NOW)
    assert decision.action == "step" and decision.next_share == 0.25, decision.reason
    # the next share needs its own labelled rows, counted from when it began
    second = RolloutState("2", "1", "canary", START, 0.25, rules.canary_steps, NOW - timedelta(minutes=5))
    assert decide(frame, spec, rules, second, NOW).action == "continue"
    last = RolloutState("2", "1", "canary", START, 1.0, rules.canary_steps, START)
    decision = decide(frame, spec, rules, last, NOW)
    assert decision.action == "promote", decision.reason
    assert decision.numbers["labelled_rows"]["candidate"] > 4000


def test_a_worse_canary_is_rolled_back(spec):
    rules = RolloutSpec(mode="canary", min_labelled_rows=200)
    frame = canary_frame(20000, 0.25, champion=1.3, candidate=0.5)
    state = RolloutState("2", "1", "canary", START, 0.25, rules.canary_steps, START)
    assert decide(frame, spec, rules, state, NOW).action == "rollback"


def test_the_same_rows_give_the_same_decision(spec):
    frame = shadow_frame(2000, champion=1.0, candidate=1.05)
    first, second = decide(frame, spec, RULES, SHADOW, NOW), decide(frame, spec, RULES, SHADOW, NOW)
    assert first.to_dict() == second.to_dict()


def test_the_table_lists_overall_and_each_slice(spec):
    decision = decide(shadow_frame(3000, champion=0.8, candidate=1.3), spec, RULES, SHADOW, NOW)
    table = decision.table()
    assert table.splitlines()[1].startswith("overall") and "premium" in table and "guardrails:" in table


def test_tight_guardrails_from_the_spec_apply(spec):
    rules = RolloutSpec(mode="shadow", guardrails=Guardrails(max_prediction_gap=0.001))
    frame = shadow_frame(500, labelled=0.0, champion=1.0, candidate=1.3)
    assert decide(frame, spec, rules, SHADOW, NOW).action == "rollback"


def test_a_slice_behind_by_more_than_the_margin_holds_the_promotion_until_its_interval_decides(spec):
    # premium: a little worse than the champion, on too few rows for its interval to say so
    frame = shadow_frame(900, champion=0.8, candidate=1.8, weak_slice="premium", weak=0.6)
    decision = decide(frame, spec, RULES, SHADOW, NOW)
    premium = decision.numbers["slices"]["premium"]
    assert decision.numbers["overall"]["low"] > -RULES.margin
    assert premium["decided"] and premium["difference"] < -RULES.margin <= premium["high"]
    assert decision.action == "continue", decision.reason
    assert decision.reason.startswith("behind on plan=premium")
