"""The dataset spec's rollout section: defaults, and a clear error for each bad value."""

from __future__ import annotations

import pytest

from include.data.rollout_spec import RolloutSpec, parse_rollout
from include.data.spec import SpecError


def test_absent_section_gives_the_documented_defaults():
    rollout = parse_rollout("s.yaml", None)
    assert rollout == RolloutSpec()
    assert (rollout.mode, rollout.canary_steps, rollout.min_labelled_rows) == ("direct", (0.05, 0.25, 1.0), 200)
    assert (rollout.max_duration_hours, rollout.margin, rollout.confidence) == (72.0, 0.01, 0.95)
    assert (rollout.guardrails.max_error_rate, rollout.guardrails.max_p99_latency_ms) == (0.02, 250.0)
    assert rollout.guardrails.max_prediction_gap == 0.15


def test_a_full_section_is_read():
    rollout = parse_rollout(
        "s.yaml",
        {
            "mode": "canary",
            "canary_steps": [0.1, 0.5, 1],
            "min_labelled_rows": 50,
            "guardrails": {"max_error_rate": 0.1},
        },
    )
    assert rollout.mode == "canary" and rollout.canary_steps == (0.1, 0.5, 1.0) and rollout.min_labelled_rows == 50
    assert rollout.guardrails.max_error_rate == 0.1 and rollout.guardrails.max_p99_latency_ms == 250.0


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("canary", "rollout must be a mapping"),
        ({"mode": "blue_green"}, "rollout.mode must be one of direct, shadow, canary"),
        ({"canary_steps": [0.5, 0.25]}, "rollout.canary_steps must rise strictly"),
        ({"canary_steps": [0.05, 1.5]}, "rollout.canary_steps[] must be above 0 and <= 1"),
        ({"canary_steps": []}, "rollout.canary_steps must be a non-empty list"),
        ({"min_labelled_rows": 0}, "rollout.min_labelled_rows must be a whole number >= 1"),
        ({"max_duration_hours": -1}, "rollout.max_duration_hours must be above 0"),
        ({"margin": 1.5}, "rollout.margin must be a number in [0, 1)"),
        ({"confidence": 1}, "rollout.confidence must be a number in (0.5, 1)"),
        ({"guardrails": {"max_latency": 3}}, "rollout.guardrails must be a mapping with keys among"),
        ({"guardrails": {"max_error_rate": "high"}}, "rollout.guardrails.max_error_rate must be a number"),
        ({"shadow": True}, "rollout has unknown key(s) ['shadow']"),
    ],
)
def test_a_bad_value_is_refused_with_the_key_named(raw, words):
    with pytest.raises(SpecError) as error:
        parse_rollout("s.yaml", raw)
    assert words in str(error.value) and "dataset spec s.yaml" in str(error.value)
