"""The rollout power benchmark: its simulated models have the AUC they claim, and it reads the decision."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import rollout_power
from include.evaluation.metrics import score


def test_the_simulated_models_have_the_auc_they_are_built_for():
    stream = rollout_power._stream(200_000, 0.05, np.random.default_rng(0))
    auc = {
        key: score("binary", stream["labels"], {"probability": stream[key]})["roc_auc"]
        for key in ("champion", "candidate")
    }
    assert auc["champion"] == pytest.approx(0.80, abs=0.005)
    assert auc["candidate"] == pytest.approx(0.85, abs=0.005)


def test_a_clearly_better_candidate_is_promoted_and_a_worse_rolled_back(spec):
    better = rollout_power.rows_to_decide(spec, "shadow", None, 0.08, seed=0)
    worse = rollout_power.rows_to_decide(spec, "canary", 0.25, -0.08, seed=0)
    assert better["action"] == "promote" and better["requests"] == better["candidate_rows"]
    assert worse["action"] == "rollback" and worse["requests"] >= 4 * 200


def test_the_section_reads_as_not_measured_without_results():
    assert "Not measured" in rollout_power.report_section(None)[0]
    lines = rollout_power.report_section(
        {
            "champion_auc": 0.8,
            "noise_correlation": 0.7,
            "checkpoints": [200, 300, 450, 675],
            "results": [
                {
                    "design": "canary 5%",
                    "effect": 0.02,
                    "expected": "promote",
                    "runs": 3,
                    "correct": 2,
                    "undecided": 1,
                    "median_candidate_rows": 1350.0,
                    "median_requests": 27000.0,
                },
            ],
        }
    )
    assert "| canary 5% | +0.02 | promote | 2/3 (1 undecided) | 1,350 | 27,000 |" in lines
