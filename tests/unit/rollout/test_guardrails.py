"""The candidate's guardrail readings from the server's per-version Prometheus series."""

from __future__ import annotations

import pytest

from include.rollout.guardrails import readings

CANARY_TEXT = """
# TYPE model_version_requests_total counter
model_version_requests_total{version="3",status="200"} 990.0
model_version_requests_total{version="5",status="200"} 180.0
model_version_requests_total{version="5",status="500"} 15.0
model_version_requests_total{version="5",status="400"} 5.0
# TYPE model_version_latency_seconds histogram
model_version_latency_seconds_bucket{version="5",le="0.01"} 100.0
model_version_latency_seconds_bucket{version="5",le="0.1"} 190.0
model_version_latency_seconds_bucket{version="5",le="0.5"} 200.0
model_version_latency_seconds_bucket{version="5",le="+Inf"} 200.0
model_version_latency_seconds_count{version="5"} 200.0
model_version_latency_seconds_sum{version="5"} 4.0
model_version_latency_seconds_bucket{version="3",le="0.01"} 990.0
model_version_latency_seconds_bucket{version="3",le="+Inf"} 990.0
# TYPE model_shadow_errors_total counter
model_shadow_errors_total{version="5"} 0.0
"""


def test_a_canary_candidates_error_rate_counts_its_server_errors_only():
    health = readings(CANARY_TEXT, "canary", candidate="5", champion="3")
    assert health.requests == 200
    assert health.error_rate == pytest.approx(15 / 200), "a 400 is the client's fault"
    # rank 198 of 200 lies in the (0.1, 0.5] bucket, which holds ranks 191..200
    assert health.p99_latency_ms == pytest.approx(1000 * (0.1 + 0.4 * 8 / 10))


def test_a_shadow_candidates_error_rate_is_its_failed_scorings_over_the_champions_requests():
    text = CANARY_TEXT.replace(
        'model_shadow_errors_total{version="5"} 0.0', 'model_shadow_errors_total{version="5"} 33.0'
    )
    health = readings(text, "shadow", candidate="5", champion="3")
    assert health.requests == 990 and health.error_rate == pytest.approx(33 / 990)
    assert health.p99_latency_ms is None


def test_absent_series_read_as_nothing_measured():
    health = readings("", "canary", candidate="5", champion="3")
    assert (health.requests, health.error_rate, health.p99_latency_ms) == (0, None, None)
