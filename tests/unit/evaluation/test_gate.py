"""The promotion gate on evaluation results shaped like include.evaluation.evaluate's."""

from __future__ import annotations

import copy
import json

import pytest

from include.evaluation.gate import Check, GateDecision, decide

MIN_ROC_AUC = 0.75
MAX_REGRESSION = 0.01


def _side(roc_auc, slices=None, log_loss=0.45):
    slices = slices if slices is not None else {"basic": 0.80, "standard": 0.81, "premium": 0.79}
    return {
        "uri": "models:/m-x",
        "overall": {"roc_auc": roc_auc, "log_loss": log_loss, "rows": 500},
        "slices": {name: {"roc_auc": value, "log_loss": 0.4, "rows": 100} for name, value in slices.items()},
    }


def _evaluation(
    challenger_auc=0.80, champion_auc=None, challenger_slices=None, champion_slices=None, p95=3.0, budget=50.0
):
    challenger = _side(challenger_auc, challenger_slices)
    challenger.update(
        {
            "latency_ms": {"p50": p95 / 2, "p95": p95},
            "latency_budget_ms": budget,
            "within_latency_budget": p95 <= budget,
        }
    )
    champion = None if champion_auc is None else _side(champion_auc, champion_slices, log_loss=0.47)
    return {"slice_feature": "plan", "holdout_rows": 500, "challenger": challenger, "champion": champion}


def _check(decision: GateDecision, name: str) -> Check:
    return next(check for check in decision.checks if check.name == name)


def test_first_model_passes_at_the_floor_and_says_there_is_no_champion():
    decision = decide(_evaluation(challenger_auc=0.75), MIN_ROC_AUC, MAX_REGRESSION)

    assert decision.passed and decision.first_model
    assert decision.reason.startswith("accepted: no champion yet: absolute floor only")
    assert "roc_auc 0.750 >= min_roc_auc 0.750" in decision.reason
    assert [check.name for check in decision.checks] == ["min_roc_auc", "latency"]
    assert decision.champion_score is None


def test_first_model_below_the_floor_is_rejected_with_numbers():
    decision = decide(_evaluation(challenger_auc=0.712), MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed and decision.first_model
    assert decision.reason == "rejected (no champion yet: absolute floor only): roc_auc 0.712 < min_roc_auc 0.750"
    assert _check(decision, "min_roc_auc").value == pytest.approx(0.712)


def test_a_failing_comparison_never_prints_as_equal():
    decision = decide(_evaluation(challenger_auc=0.7496), MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    assert "roc_auc 0.7496 < min_roc_auc 0.7500" in decision.reason


def test_overall_regression_beyond_tolerance_is_rejected():
    decision = decide(_evaluation(challenger_auc=0.80, champion_auc=0.83), MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed and not decision.first_model
    overall = _check(decision, "regression_overall")
    assert not overall.passed and overall.value == pytest.approx(0.03) and overall.threshold == MAX_REGRESSION
    assert decision.reason == (
        "rejected: overall regressed 0.030 > max_regression 0.010 (roc_auc 0.800 vs champion 0.830)"
    )


def test_regression_in_one_slice_is_rejected_even_when_overall_improves():
    evaluation = _evaluation(
        challenger_auc=0.82,
        champion_auc=0.80,
        challenger_slices={"basic": 0.85, "standard": 0.84, "premium": 0.759},
        champion_slices={"basic": 0.80, "standard": 0.81, "premium": 0.79},
    )

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    assert _check(decision, "regression_overall").passed
    assert [check.name for check in decision.failed_checks] == ["slice plan=premium"]
    assert decision.reason.startswith("rejected: slice plan=premium regressed 0.031 > max_regression 0.010")


def test_regression_within_tolerance_passes():
    evaluation = _evaluation(
        challenger_auc=0.795,
        champion_auc=0.80,
        challenger_slices={"basic": 0.795, "standard": 0.80, "premium": 0.78},
        champion_slices={"basic": 0.80, "standard": 0.81, "premium": 0.79},
    )

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert decision.passed and not decision.first_model
    assert decision.reason.startswith("accepted: roc_auc 0.795 >= min_roc_auc 0.750")
    assert "vs champion 0.800" in decision.reason
    assert _check(decision, "log_loss").passed and "not gated" in _check(decision, "log_loss").detail


def test_single_class_slice_is_reported_not_failed_but_a_missing_slice_fails():
    evaluation = _evaluation(
        challenger_auc=0.81,
        champion_auc=0.80,
        challenger_slices={"basic": 0.81, "standard": None},
        champion_slices={"basic": 0.80, "standard": 0.81, "premium": 0.79},
    )

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    standard = _check(decision, "slice plan=standard")
    assert standard.passed and "not comparable" in standard.detail
    premium = _check(decision, "slice plan=premium")
    assert not premium.passed and "missing for the challenger" in premium.detail
    assert not decision.passed
    assert decision.reason == "rejected: slice plan=premium missing for the challenger"


@pytest.mark.parametrize("value, detail", [(None, "missing"), (float("nan"), "NaN"), ("n/a", "not a number")])
def test_missing_none_or_nan_challenger_metric_fails_closed(value, detail):
    evaluation = _evaluation(challenger_auc=0.9)
    evaluation["challenger"]["overall"]["roc_auc"] = value

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    check = _check(decision, "min_roc_auc")
    assert not check.passed and detail in check.detail
    assert decision.challenger_score is None


def test_missing_keys_fail_closed():
    without_overall = _evaluation()
    del without_overall["challenger"]["overall"]
    assert "missing" in _check(decide(without_overall, MIN_ROC_AUC, MAX_REGRESSION), "min_roc_auc").detail

    without_latency = _evaluation()
    del without_latency["challenger"]["latency_ms"]
    decision = decide(without_latency, MIN_ROC_AUC, MAX_REGRESSION)
    assert not decision.passed and "latency p95 missing" in decision.reason

    # "champion": None means first model; no "champion" key at all means a broken evaluation
    without_champion_key = _evaluation()
    del without_champion_key["champion"]
    decision = decide(without_champion_key, MIN_ROC_AUC, MAX_REGRESSION)
    assert not decision.passed and not decision.first_model
    assert "champion missing from the evaluation" in decision.reason


@pytest.mark.parametrize(
    "champion_value, detail", [(None, "champion roc_auc missing"), (float("nan"), "champion roc_auc NaN")]
)
def test_unusable_champion_overall_metric_fails_closed(champion_value, detail):
    evaluation = _evaluation(challenger_auc=0.85, champion_auc=0.80)
    evaluation["champion"]["overall"]["roc_auc"] = champion_value

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    assert detail in _check(decision, "regression_overall").detail


def test_nan_in_a_slice_fails_closed():
    evaluation = _evaluation(
        challenger_auc=0.85,
        champion_auc=0.80,
        challenger_slices={"basic": float("nan"), "standard": 0.81, "premium": 0.79},
    )

    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    assert "slice plan=basic: challenger roc_auc NaN" in decision.reason


def test_latency_over_budget_is_rejected():
    decision = decide(_evaluation(challenger_auc=0.9, p95=73.2, budget=50.0), MIN_ROC_AUC, MAX_REGRESSION)

    assert not decision.passed
    assert decision.reason == (
        "rejected (no champion yet: absolute floor only): latency p95 73.200 ms > budget 50.000 ms"
    )
    assert _check(decision, "latency").value == 73.2 and _check(decision, "latency").threshold == 50.0


def test_every_failure_is_listed_in_the_reason():
    evaluation = _evaluation(
        challenger_auc=0.712,
        champion_auc=0.80,
        p95=60.0,
        challenger_slices={"basic": 0.70, "standard": 0.81, "premium": 0.70},
    )

    decision = decide(evaluation, 0.75, 0.01)

    assert decision.reason.startswith("rejected: roc_auc 0.712 < min_roc_auc 0.750; latency p95 60.000 ms > budget")
    assert "overall regressed 0.088 > max_regression 0.010" in decision.reason
    assert "slice plan=basic regressed 0.100" in decision.reason
    assert "slice plan=premium regressed 0.090" in decision.reason
    assert "plan=standard" not in decision.reason


def test_tags_table_and_dict_round_trip():
    evaluation = _evaluation(challenger_auc=0.80, champion_auc=0.83)
    decision = decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    tags = decision.as_tags()
    assert tags["gate.passed"] == "false"
    assert tags["gate.first_model"] == "false"
    assert tags["gate.reason"] == decision.reason
    assert float(tags["gate.min"]) == MIN_ROC_AUC and float(tags["gate.max_regression"]) == MAX_REGRESSION
    assert float(tags["gate.challenger_score"]) == 0.80 and float(tags["gate.champion_score"]) == 0.83
    assert tags["gate.check.regression_overall"] == "fail"
    assert tags["gate.check.slice_plan.premium"] == "pass"
    assert all(isinstance(value, str) for value in tags.values())

    table = decision.table().splitlines()
    assert table[0].split() == ["check", "value", "threshold", "result", "detail"]
    assert any(line.startswith("regression_overall") and "FAIL" in line and "0.0300" in line for line in table)
    # aligned: the result column starts at the same offset on every row
    offset = table[0].index("result")
    assert all(line[offset : offset + 4] in ("pass", "FAIL") for line in table[2 : 2 + len(decision.checks)])

    assert GateDecision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_first_model_tags_say_there_is_no_champion():
    tags = decide(_evaluation(), MIN_ROC_AUC, MAX_REGRESSION).as_tags()

    assert tags["gate.passed"] == "true" and tags["gate.first_model"] == "true"
    assert tags["gate.champion_score"] == "none"


@pytest.mark.parametrize("min_roc_auc, max_regression", [(1.5, 0.01), (float("nan"), 0.01), (0.75, -0.01)])
def test_bad_thresholds_are_rejected(min_roc_auc, max_regression):
    with pytest.raises(ValueError, match="min_roc_auc|max_regression"):
        decide(_evaluation(), min_roc_auc, max_regression)


def test_decide_does_not_modify_the_evaluation():
    evaluation = _evaluation(challenger_auc=0.81, champion_auc=0.80)
    before = copy.deepcopy(evaluation)

    decide(evaluation, MIN_ROC_AUC, MAX_REGRESSION)

    assert evaluation == before
