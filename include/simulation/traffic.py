"""The demo's production traffic: days of generated customers sent to a running model server.

For each day, :func:`simulate` generates that day's customers with the demo data
generator (a seed other than the training data's, so they are new customers; drift,
if asked for, from its first day on), and sends their features to ``<url>/invocations``
as a client would, ``batch_rows`` rows per request in event-time order, each request
stamped with ``X-Request-Time`` (its first row's event time) so that the server logs
it under the simulated day rather than today. The server writes the inference log
itself; once it has written every row sent (polled on ``GET /metrics``), the true
outcomes are stored as labels next to those predictions and, unless told otherwise,
the day's labelled rows are landed in the training data's landing zone, so that a
retraining window that covers these days learns from them.

Labels are stamped ``event_time + 30 days``: ``churned`` says whether the customer
cancelled within 30 days, so that is when the label becomes known.

The labels go to ``settings.inference_log``, which must be the log the server writes
(the local deployer starts it with exactly that).

CLI::

    python -m include.simulation.traffic --url http://127.0.0.1:5080 --start 2026-11-10 --days 10 \\
        --rows-per-day 500 [--drift covariate --drift-from 2026-11-15 --drift-strength 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from include.simulation.drift import DriftConfig, add_drift_arguments, drift_from_args
from include.util.cli import parse_date_arg
from include.util.net import is_loopback

if TYPE_CHECKING:
    import pandas as pd
    import requests

    from include.data.spec import DatasetSpec
    from include.settings import Settings

# the training data is landed with seed 7 (include.simulation.generate's default)
DEFAULT_SEED = 11
DEFAULT_BATCH_ROWS = 50
LABEL_DELAY = timedelta(days=30)
DEFAULT_FLUSH_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
_POLL_SECONDS = 0.1


class TrafficError(RuntimeError):
    """The server could not be reached, refused a request, or did not log what it was sent."""


@dataclass(frozen=True)
class SentDay:
    """One day of rows sent to the model server: ``rows`` rows in ``requests`` requests, and the
    label files stored next to their predictions (what a replay of landed rows reports)."""

    day: date
    rows: int
    requests: int
    label_files: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DaySummary(SentDay):
    """What :func:`simulate` sent for one day: a :class:`SentDay`, whether the day drifted, the
    mean predicted probability, and the training partition it landed."""

    drifted: bool
    mean_probability: float
    landed: str | None = None  # the training partition written, when landing was asked for


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_url(url: str) -> str:
    """``url`` without a trailing slash. Raises ``ValueError`` unless it is an http(s) URL with a host."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be the server's base URL such as http://127.0.0.1:5080, got {url!r}")
    return url.rstrip("/")


def is_drifted(drift: DriftConfig | None, day: date) -> bool:
    """Whether ``drift`` changes ``day`` at all (False when there is no drift)."""
    return drift is not None and (drift.covariate_strength(day) > 0 or drift.concept_strength(day) > 0)


class ModelServerClient:
    """The model server's HTTP API, as a client replaying traffic uses it (the simulator, the replay)."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.session = requests.Session()
        # a loopback server must not be reached through a proxy from the environment
        self.session.trust_env = not is_loopback(url)

    def close(self) -> None:
        """Close the HTTP session; never raises."""
        self.session.close()

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        import requests

        try:
            return self.session.request(method, f"{self.url}{path}", timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise TrafficError(f"{method} {self.url}{path} failed: {exc}; is the model server running?") from exc

    def metrics(self) -> dict[str, float]:
        """The server's unlabelled Prometheus samples: a dict of sample name to float value.

        Raises :class:`TrafficError` when ``/metrics`` cannot be reached, does not answer
        HTTP 200, or is not in the Prometheus text format.
        """
        from prometheus_client.parser import text_string_to_metric_families

        response = self._call("GET", "/metrics")
        if response.status_code != 200:
            raise TrafficError(f"GET {self.url}/metrics answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return {
                sample.name: sample.value
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if not sample.labels
            }
        except ValueError as exc:
            raise TrafficError(f"{self.url}/metrics is not in the Prometheus text format: {exc}") from exc

    def rows_written(self) -> tuple[float, float]:
        """The server's inference log counters: (rows written, write errors).

        Raises :class:`TrafficError` when the server is not the project's model server or
        runs without an inference log, and as :meth:`metrics` does.
        """
        values = self.metrics()
        if "inference_log_rows_written_total" not in values:
            raise TrafficError(
                f"{self.url}/metrics has no inference_log_rows_written_total: is this the "
                "project's model server (python -m include.serving)?"
            )
        if values.get("inference_log_enabled") == 0:
            raise TrafficError(
                f"the server at {self.url} runs without an inference log; start it with "
                "--inference-log (the local deployer does)"
            )
        return values["inference_log_rows_written_total"], values.get("inference_log_write_errors_total", 0.0)

    def predict(self, batch: pd.DataFrame, features: list[str], event_time: Any) -> tuple[list[str], list[dict]]:
        """(request id, answer record) per row of ``batch``, sent as one request stamped ``event_time``.

        Missing values (None, NaN) are sent as JSON null. Raises :class:`TrafficError`
        when the server cannot be reached or does not answer every row.
        """
        import pandas as pd

        # tolist: plain Python values for json; NaN and None alike become null
        columns = [
            [
                None if value is None or (isinstance(value, float) and value != value) else value
                for value in batch[name].astype(object).where(pd.notna(batch[name]), None).tolist()
            ]
            for name in features
        ]
        body = json.dumps(
            {"dataframe_split": {"columns": features, "data": [list(row) for row in zip(*columns, strict=False)]}}
        )
        response = self._call(
            "POST",
            "/invocations",
            data=body,
            headers={"Content-Type": "application/json", "X-Request-Time": event_time.isoformat()},
        )
        if response.status_code != 200:
            raise TrafficError(
                f"POST {self.url}/invocations answered HTTP {response.status_code} for the batch "
                f"starting at {event_time.isoformat()}: {response.text[:500]}"
            )
        try:
            payload = response.json()
            request_ids = payload["request_ids"]
            answers = list(payload["predictions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrafficError(
                f"POST {self.url}/invocations returned no request_ids and predictions ({exc!r}): {response.text[:200]}"
            ) from None
        if len(request_ids) != len(batch) or len(answers) != len(batch):
            raise TrafficError(
                f"POST {self.url}/invocations returned {len(request_ids)} request ids and "
                f"{len(answers)} predictions for {len(batch)} rows"
            )
        return request_ids, answers

    def send_rows(
        self, rows: pd.DataFrame, features: list[str], event_times: pd.Series, batch_rows: int
    ) -> tuple[list[str], list[dict], int]:
        """Send ``rows`` in order, ``batch_rows`` per request, each request stamped with its first
        row's event time (``event_times`` holds one per row, aligned with ``rows``).

        Returns (request id per row, answer record per row, requests sent). Raises
        :class:`TrafficError` as :meth:`predict` does.
        """
        request_ids: list[str] = []
        answers: list[dict] = []
        requests = 0
        for first in range(0, len(rows), batch_rows):
            ids, batch_answers = self.predict(rows.iloc[first : first + batch_rows], features, event_times.iloc[first])
            request_ids.extend(ids)
            answers.extend(batch_answers)
            requests += 1
        return request_ids, answers, requests

    def wait_until_written(self, expected: float, sent: int, timeout: float) -> None:
        """Poll until the server has written ``expected`` rows in all; returns None once it has.

        Raises :class:`TrafficError` when that takes longer than ``timeout`` seconds (the
        message counts which of the ``sent`` rows were logged), and as :meth:`rows_written` does.
        """
        deadline = time.monotonic() + timeout
        while True:
            written, errors = self.rows_written()
            if written >= expected:
                return
            if time.monotonic() > deadline:
                raise TrafficError(
                    f"the server at {self.url} logged {written - (expected - sent):.0f} of the {sent} rows sent "
                    f"within {timeout:.0f}s (inference log write errors: {errors:.0f}); see the server's log"
                )
            time.sleep(_POLL_SECONDS)


def simulate(
    settings: Settings,
    spec: DatasetSpec,
    url: str,
    start: date,
    days: int,
    rows_per_day: int,
    seed: int = DEFAULT_SEED,
    drift: DriftConfig | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    land_to_training_data: bool = True,
    *,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> list[DaySummary]:
    """Send ``days`` days of ``rows_per_day`` customers from ``start`` to the server at ``url``.

    Returns one :class:`DaySummary` per day, in order. Nothing is sent when a training
    partition it would land already holds other data (say the training history covers
    these days). Re-running it logs the days again under new request ids: the log is
    append-only.

    Raises ``ValueError`` for invalid arguments (and what
    :func:`~include.simulation.generate.generate_day` raises); :class:`TrafficError` when
    a partition to land holds other data, or the server cannot be reached, refuses a
    request or does not log every row within ``flush_timeout`` seconds.
    """
    import numpy as np

    from include.data.partitions import to_parquet_bytes
    from include.monitoring.inference_log import write_labels
    from include.simulation.generate import generate_day, land_days, partition_path

    url = check_url(url)
    if not isinstance(start, date):
        raise ValueError(f"start must be a datetime.date, got {start!r}")
    for name, value in (("days", days), ("rows_per_day", rows_per_day), ("batch_rows", batch_rows)):
        _check_positive(name, value)
    if drift is not None and not isinstance(drift, DriftConfig):
        raise ValueError(f"drift must be a DriftConfig or None, got {drift!r}")
    all_days = [start + timedelta(days=offset) for offset in range(days)]
    frames = {day: generate_day(spec, day, rows_per_day, seed, drift) for day in all_days}
    if land_to_training_data:
        for day, frame in frames.items():
            path = partition_path(spec, day)
            if path.is_file() and path.read_bytes() != to_parquet_bytes(frame):
                raise TrafficError(
                    f"{path} already holds other data for {day} (training history?); simulate days "
                    "after it, or pass land_to_training_data=False"
                )

    server = ModelServerClient(url)
    try:
        written_before, _ = server.rows_written()
        features = spec.feature_names
        sent: dict[date, tuple[list[str], list[float], int]] = {}
        for day, frame in frames.items():
            # generate_day returns the rows in event-time order
            request_ids, answers, requests_sent = server.send_rows(
                frame, features, frame[spec.timestamp_column], batch_rows
            )
            sent[day] = (request_ids, [answer["probability"] for answer in answers], requests_sent)
        total = sum(len(ids) for ids, _, _ in sent.values())
        # labels only make sense next to predictions that are really in the log
        server.wait_until_written(written_before + total, total, flush_timeout)
    finally:
        server.close()

    summaries = []
    for day, frame in frames.items():
        request_ids, probabilities, requests_sent = sent[day]
        labels = frame[[spec.target]].rename(columns={spec.target: "label"})
        labels.insert(0, "request_id", request_ids)
        labels["label_timestamp"] = frame[spec.timestamp_column] + LABEL_DELAY
        label_files = write_labels(settings.inference_log, labels, day=day)
        landed = None
        if land_to_training_data:
            # the same generator call as above, so the landed rows are exactly the ones sent
            landed = str(land_days(spec, day, 1, rows_per_day, seed, drift)[0])
        summaries.append(
            DaySummary(
                day,
                len(frame),
                requests_sent,
                tuple(label_files),
                drifted=is_drifted(drift, day),
                mean_probability=float(np.mean(probabilities)),
                landed=landed,
            )
        )
    return summaries


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring).

    Returns 0, or 1 after printing a :class:`TrafficError`; invalid arguments exit with status 2.
    """
    from include.data.spec import load_spec
    from include.settings import Settings

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m include.simulation.traffic",
        description="Send days of generated customers to a running model server, then store their labels.",
    )
    parser.add_argument(
        "--url", default=settings.serving_url, help=f"the model server's base URL (default: {settings.serving_url})"
    )
    parser.add_argument("--start", type=parse_date_arg, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, required=True, help="number of consecutive days")
    parser.add_argument("--rows-per-day", type=int, required=True, help="customers per day")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"generator seed (default {DEFAULT_SEED}; the training data uses 7)",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help=f"rows per request (default {DEFAULT_BATCH_ROWS})"
    )
    add_drift_arguments(parser)
    parser.add_argument(
        "--no-land", action="store_true", help="do not land the labelled rows in the training data's landing zone"
    )
    parser.add_argument(
        "--flush-timeout",
        type=float,
        default=DEFAULT_FLUSH_TIMEOUT,
        help=f"seconds to wait for the server to log every row (default {DEFAULT_FLUSH_TIMEOUT:g})",
    )
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    args = parser.parse_args(argv)

    drift = drift_from_args(parser, args)
    try:
        spec = load_spec(args.spec or settings.dataset_spec)
        summaries = simulate(
            settings,
            spec,
            args.url,
            args.start,
            args.days,
            args.rows_per_day,
            args.seed,
            drift,
            args.batch_rows,
            not args.no_land,
            flush_timeout=args.flush_timeout,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except TrafficError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for summary in summaries:
        print(
            f"{summary.day}  {summary.rows:>6} rows  {summary.requests:>5} requests  "
            f"mean p(churn) {summary.mean_probability:.3f}  {'drifted' if summary.drifted else 'normal'}"
        )
    rows = sum(summary.rows for summary in summaries)
    landed = f"; labelled rows landed in {spec.location}" if not args.no_land else ""
    print(
        f"sent {rows} rows in {sum(s.requests for s in summaries)} requests to {args.url}; labels in "
        f"{settings.inference_log}{landed}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
