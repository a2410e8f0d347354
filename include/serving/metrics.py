"""The server's Prometheus metrics, answered by ``GET /metrics`` in the text format.

Each app has a registry of its own, so several apps in one process do not clash:

- ``model_requests_total{status}``: ``/invocations`` requests by HTTP status code;
- ``model_request_errors_total``: requests answered without predictions, 4xx and 5xx
  alike (the status label tells them apart);
- ``model_request_latency_seconds``: the time to answer a request;
- ``model_prediction_probability``: each row's ``probability``: P(positive class) for a
  binary model, the predicted class's for a multiclass one; a regression model
  observes nothing;
- ``model_predictions_total{prediction}``: rows by predicted label or class (a
  regression model's values are not counted);
- ``model_served_version{model_name,version}``: 1 for the version now served;
- ``model_batch_requests``: requests answered by each shared model call;

Per version (label ``version``; with no rollout the champion's alone, during one the champion's
and the candidate's, so that the two can be compared):

- ``model_version_requests_total{version,status}``: ``/invocations`` requests answered (or failed)
  by the version, by HTTP status; a canary request whose rows both versions answered counts
  for each;
- ``model_version_rows_total{version}``: rows the version answered (shadow rows are not answers);
- ``model_version_errors_total{version}``: the version's requests answered without predictions;
- ``model_version_latency_seconds{version}``: the time to answer the version's requests;
- ``model_shadow_errors_total{version}``: requests a shadow candidate failed to score (the
  champion's answer was sent all the same);
- ``model_rollout_candidate{version,mode}``: 1 for the candidate of the running rollout
  (absent without one), and ``model_canary_share``: its canary share (0 without a canary);

- ``inference_log_enabled``, ``inference_log_rows_written_total``,
  ``inference_log_write_errors_total``, ``inference_log_rows_dropped_total`` and
  ``inference_log_rows_pending``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi.responses import Response

from include.serving.model import PREDICTION, PROBABILITY

# serving latencies are a few milliseconds: the client library's default buckets start at 5 ms
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBABILITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _ProbabilityHistogram:
    """A Prometheus histogram collector of predicted probabilities, observed a whole request at a time.

    prometheus_client's Histogram takes one value per call (with a lock each); a
    batch of thousands of rows is counted here in one numpy pass instead.
    ``bounds`` are the buckets' inclusive upper bounds, ascending; ``+Inf`` is added.
    """

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name, self.documentation, self.bounds = name, documentation, bounds
        self._bounds_array = np.array(bounds)
        self._lock = threading.Lock()
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, values: np.ndarray) -> None:
        """Count every value of the 1-d float array ``values``; thread-safe, returns nothing."""
        if len(values) <= 16:
            # a bucket's bound is inclusive ("le"): bisect_left finds the first bound >= value
            indices = [bisect_left(self.bounds, value) for value in values.tolist()]
            total = float(sum(values.tolist()))
            with self._lock:
                for index in indices:
                    self._counts[index] += 1
                self._sum += total
            return
        counts = np.bincount(
            np.searchsorted(self._bounds_array, values, side="left"), minlength=len(self.bounds) + 1
        ).tolist()
        total = float(values.sum())
        with self._lock:
            for index, count in enumerate(counts):
                self._counts[index] += count
            self._sum += total

    def collect(self):
        """Yields the server's state as Prometheus metric families (served version, ...), read at scrape time."""
        """Yields one ``HistogramMetricFamily`` with cumulative bucket counts and the sum (the collector protocol)."""
        from prometheus_client.core import HistogramMetricFamily

        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=False):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class _StateCollector:
    """Metrics read from the server's state when scraped, so they can never disagree with it."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        served = self._state.served
        version = GaugeMetricFamily(
            "model_served_version", "1 for the model version this server answers with", labels=["model_name", "version"]
        )
        if served is not None:
            version.add_metric([served.name, served.version], 1)
        yield version
        rollout = self._state.rollout
        candidate = GaugeMetricFamily(
            "model_rollout_candidate", "1 for the candidate of the running rollout", labels=["version", "mode"]
        )
        if rollout is not None:
            candidate.add_metric([rollout.candidate.version, rollout.config.mode], 1)
        yield candidate
        yield GaugeMetricFamily(
            "model_canary_share",
            "share of the keys the canary candidate answers (0 without a canary)",
            value=rollout.config.canary_share if rollout is not None else 0.0,
        )
        writer = self._state.log_writer
        yield GaugeMetricFamily(
            "inference_log_enabled",
            "1 when answered rows are written to an inference log",
            value=1 if writer is not None else 0,
        )
        yield CounterMetricFamily(
            "inference_log_rows_written",
            "rows written to the inference log",
            value=writer.rows_written if writer else 0,
        )
        yield CounterMetricFamily(
            "inference_log_write_errors",
            "failed inference log writes (each retried), rows it could not store, and rows it refused",
            value=(writer.write_errors if writer else 0) + self._state.log_append_errors,
        )
        yield CounterMetricFamily(
            "inference_log_rows_dropped",
            "rows the inference log gave up on",
            value=writer.rows_dropped if writer else 0,
        )
        yield GaugeMetricFamily(
            "inference_log_rows_pending",
            "rows waiting to be written to the inference log",
            value=writer.pending_rows if writer else 0,
        )


class ServingMetrics:
    """The server's Prometheus metrics, in a registry of its own (:attr:`registry`).

    ``state`` is the app's serving state, read at each scrape: ``served`` (a
    :class:`~include.serving.model.ServedModel` or None), ``log_writer`` (an
    :class:`~include.monitoring.inference_log.InferenceLogWriter` or None) and
    ``log_append_errors`` (an int).
    """

    def __init__(self, state: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._requests = Counter(
            "model_requests", "/invocations requests by HTTP status code", ["status"], registry=self.registry
        )
        self._errors = Counter(
            "model_request_errors",
            "/invocations requests answered without predictions (4xx and 5xx)",
            registry=self.registry,
        )
        self._latency = Histogram(
            "model_request_latency_seconds",
            "time to answer an /invocations request",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._predictions = Counter(
            "model_predictions",
            "predicted rows by predicted label (binary) or class (multiclass)",
            ["prediction"],
            registry=self.registry,
        )
        self.probabilities = _ProbabilityHistogram(
            "model_prediction_probability",
            "predicted probabilities, one per row: P(positive class) (binary) or the predicted class's (multiclass)",
            PROBABILITY_BUCKETS,
        )
        self.registry.register(self.probabilities)
        self._batch_requests = Histogram(
            "model_batch_requests",
            "requests answered by one shared model call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._version_requests = Counter(
            "model_version_requests",
            "/invocations requests answered (or failed) by a version, by HTTP status code",
            ["version", "status"],
            registry=self.registry,
        )
        self._version_rows = Counter(
            "model_version_rows", "rows answered by a version", ["version"], registry=self.registry
        )
        self._version_errors = Counter(
            "model_version_errors",
            "a version's /invocations requests answered without predictions (4xx and 5xx)",
            ["version"],
            registry=self.registry,
        )
        self._version_latency = Histogram(
            "model_version_latency_seconds",
            "time to answer a version's /invocations requests",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._shadow_errors = Counter(
            "model_shadow_errors",
            "requests a shadow candidate failed to score (the champion's answer was sent)",
            ["version"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))
        # children looked up once: labels() takes a lock and builds a key on every call
        self._by_status: dict[int, Any] = {}
        self._by_label: dict[int | str, Any] = {}
        self._by_version_status: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self._rows_by_version: dict[str, Any] = {}

    def batch(self, requests: int, rows: int) -> None:
        """Observe one shared model call that answered ``requests`` requests.

        ``rows`` is accepted to fit :class:`~include.serving.batching.MicroBatcher`'s
        ``observe(requests, rows)`` callback; no metric counts it.
        """
        self._batch_requests.observe(requests)

    def request(self, status_code: int, seconds: float, versions: tuple[str, ...] | list[str] = ()) -> None:
        """Count one ``/invocations`` request answered with ``status_code`` after ``seconds`` seconds,
        for the server and for each of the ``versions`` that answered (or failed) it."""
        child = self._by_status.get(status_code)
        if child is None:
            child = self._by_status.setdefault(status_code, self._requests.labels(status=str(status_code)))
        child.inc()
        failed = status_code >= 400
        if failed:
            self._errors.inc()
        self._latency.observe(seconds)
        for version in versions:
            children = self._by_version_status.get((version, status_code))
            if children is None:
                children = self._by_version_status.setdefault(
                    (version, status_code),
                    (
                        self._version_requests.labels(version=version, status=str(status_code)),
                        self._version_errors.labels(version=version),
                        self._version_latency.labels(version=version),
                    ),
                )
            requests, errors, latency = children
            requests.inc()
            if failed:
                errors.inc()
            latency.observe(seconds)

    def shadow_error(self, version: str) -> None:
        """Count one request the shadow candidate ``version`` failed to score."""
        self._shadow_errors.labels(version=version).inc()

    def answered(self, outputs: Mapping[str, np.ndarray], version: str | None = None) -> None:
        """Observe the rows of one answered request (or of the part ``version`` answered):
        ``outputs`` holds its checked output columns."""
        if version is not None:
            rows = self._rows_by_version.get(version)
            if rows is None:
                rows = self._rows_by_version.setdefault(version, self._version_rows.labels(version=version))
            rows.inc(len(outputs[PREDICTION]))
        probabilities = outputs.get(PROBABILITY)
        if probabilities is not None:
            self.probabilities.observe(probabilities)
        labels = outputs[PREDICTION]
        if labels.dtype.kind == "f":  # a regression model's values: not labels to count
            return
        if len(labels) <= 16 or labels.dtype.kind == "O":
            counts: dict[int | str, int] = {}
            for label in labels.tolist():
                counts[label] = counts.get(label, 0) + 1
        else:
            values, frequencies = np.unique(labels, return_counts=True)
            counts = dict(zip(values.tolist(), frequencies.tolist(), strict=False))
        for label, count in counts.items():
            child = self._by_label.get(label)
            if child is None:
                child = self._by_label.setdefault(label, self._predictions.labels(prediction=str(label)))
            child.inc(count)

    def exposition(self) -> Response:
        """The registry's metrics as a ``text/plain; version=0.0.4`` Prometheus response (status 200)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
