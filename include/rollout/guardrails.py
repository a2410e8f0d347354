"""The candidate's serving health, read from the model server's ``/metrics`` (Prometheus text).

The server keeps per-version series (:mod:`include.serving.metrics`): requests by HTTP status, a latency
histogram, and the requests a shadow candidate failed to score. From them, for the candidate:

- **canary**: its error rate is its requests answered with a 5xx status over all its requests (a 4xx is
  the client's fault, whichever version answered), and its p99 latency is interpolated in its latency
  histogram as Prometheus' ``histogram_quantile`` does;
- **shadow**: it answers nothing, so its error rate is the requests it failed to score over the requests
  the champion answered; its latency is not measured (the champion's answer never waits for it).

The counters count since the server started; a restart starts them again.
"""

from __future__ import annotations

import math

from include.rollout.decision import GuardrailReadings

REQUESTS = "model_version_requests"
LATENCY = "model_version_latency_seconds"
SHADOW_ERRORS = "model_shadow_errors"
P99 = 0.99


def _samples(text: str):
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield family.name, sample


def readings(metrics_text: str, mode: str, candidate: str, champion: str) -> GuardrailReadings:
    """The candidate's :class:`~include.rollout.decision.GuardrailReadings` from ``metrics_text``.

    ``mode`` is ``shadow`` or ``canary``; ``candidate`` and ``champion`` are version numbers (str).
    Series that are absent read as nothing measured (zero requests, None). Raises ``ValueError`` for text
    that is not in the Prometheus format.
    """
    requests = {candidate: 0.0, champion: 0.0}
    server_errors = 0.0
    shadow_errors = 0.0
    buckets: list[tuple[float, float]] = []
    for family, sample in _samples(metrics_text):
        version = sample.labels.get("version")
        if family == REQUESTS and sample.name.endswith("_total") and version in requests:
            requests[version] += sample.value
            if version == candidate and str(sample.labels.get("status", "")).startswith("5"):
                server_errors += sample.value
        elif family == SHADOW_ERRORS and sample.name.endswith("_total") and version == candidate:
            shadow_errors += sample.value
        elif family == LATENCY and sample.name.endswith("_bucket") and version == candidate:
            buckets.append((float(sample.labels["le"]), sample.value))
    if mode == "shadow":
        scored = int(requests[champion])
        return GuardrailReadings(scored, shadow_errors / scored if scored else None, None)
    answered = int(requests[candidate])
    return GuardrailReadings(answered, server_errors / answered if answered else None, _quantile(sorted(buckets), P99))


def _quantile(buckets: list[tuple[float, float]], quantile: float) -> float | None:
    """The ``quantile`` in milliseconds of a cumulative histogram ``[(upper bound s, count), ...]`` (ascending),
    interpolated linearly inside its bucket; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                # beyond the last finite bound: that bound is all the histogram can say
                return 1000 * lower_bound
            inside = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return 1000 * (lower_bound + (bound - lower_bound) * inside)
        lower_bound, lower_count = bound, count
    return 1000 * lower_bound
