"""make demo's rollout pieces that need no running stack: the demo spec and the decision lines."""

from __future__ import annotations

from include.data.spec import load_spec
from include.settings import PROJECT_ROOT
from scripts.demo_rollout import DEMO_ROLLOUT, describe_decision, write_demo_spec

CHURN = PROJECT_ROOT / "include/datasets/customer_churn.yaml"


def test_the_demo_spec_is_the_churn_spec_with_a_canary(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    written = write_demo_spec(CHURN, tmp_path)
    assert written == tmp_path / "demo" / "customer_churn.yaml"
    original, demo = load_spec(CHURN), load_spec(written)
    assert demo.rollout.mode == "canary"
    assert list(demo.rollout.canary_steps) == DEMO_ROLLOUT["canary_steps"]
    # everything else is the churn spec's
    assert demo.features == original.features and demo.gate == original.gate
    assert (demo.location, demo.expectation_suite) == (original.location, original.expectation_suite)
    assert original.rollout.mode == "direct"


def test_a_decision_reads_as_one_line():
    decision = {
        "action": "step",
        "state": "running",
        "mode": "canary",
        "reason": "non-inferior overall: step to 0.25",
        "numbers": {"canary_share": 0.05, "labelled_rows": {"candidate": 512, "champion": 9488}},
    }
    assert describe_decision(decision) == (
        "share 5%  labelled rows: candidate 512, champion 9488  -> STEP: non-inferior overall: step to 0.25"
    )
    shadow = {"action": "continue", "mode": "shadow", "reason": "too few", "numbers": {}}
    assert describe_decision(shadow) == "labelled rows: candidate 0, champion 0  -> CONTINUE: too few"
