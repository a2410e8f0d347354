"""Replay a user's own landed rows through the model server, with their own event times and labels.

The production loop on real data, without a production: the later part of a
landed table (days the champion did not learn from) is sent to ``<url>/invocations``
as a client would send it, ``batch_rows`` rows per request in event-time order,
each request stamped ``X-Request-Time`` with its first row's event time, so that
the server logs it under that row's own day. Once the server has written every
row (polled on ``GET /metrics``), each row's true label (the target as landed) is
stored next to its prediction, stamped with the row's event time. ``drift_monitor``
then checks those days as it would check live traffic.

Rows go through the one cast (:func:`include.data.cast.model_input`) before they
are sent, so integer counts, nullable integers and pandas categories reach the
server as the model's signature declares them.

CLI::

    python -m include.monitoring.replay --spec SPEC --start 2015-01-01 [--end 2015-03-01] \\
        [--url http://127.0.0.1:5080] [--batch-rows 50]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from include.simulation.traffic import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_FLUSH_TIMEOUT,
    ModelServerClient,
    SentDay,
    TrafficError,
    check_url,
)

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings


def replay(
    settings: Settings,
    spec: DatasetSpec,
    url: str,
    start: date,
    end: date | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> list[SentDay]:
    """Send the landed rows of the days ``start <= day < end`` (``end`` None: every later day) to ``url``.

    Returns one :class:`~include.simulation.traffic.SentDay` per landed day, oldest first. Labels go to
    ``settings.inference_log``, which must be the log the server writes. Raises
    ``ValueError`` for bad arguments or no landed day in the range, :class:`TrafficError`
    when the server refuses a request or does not log every row within ``flush_timeout``.
    Re-running it logs the rows again under new request ids: the log is append-only.
    """
    from include.data.cast import model_input
    from include.data.partitions import partition_dates, read_window
    from include.monitoring.inference_log import write_labels

    url = check_url(url)
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    days = [day for day in partition_dates(spec) if day >= start and (end is None or day < end)]
    if not days:
        raise ValueError(
            f"no landed partition of {spec.name} in {spec.location} from {start}"
            f"{'' if end is None else f' to {end}'}: land the rows with python -m include.data.ingest"
        )
    frame = read_window(spec, days[0], days[-1] + timedelta(days=1))
    frame = frame.sort_values([spec.timestamp_column, spec.id_column], kind="mergesort").reset_index(drop=True)
    event_times = frame[spec.timestamp_column]
    features = model_input(frame, spec)

    server = ModelServerClient(url)
    sent: dict[date, tuple[list[str], list[int], int]] = {}
    try:
        written_before, _ = server.rows_written()
        row_days = event_times.dt.tz_convert("UTC").dt.date.to_numpy()
        for day in days:
            positions = (row_days == day).nonzero()[0].tolist()
            request_ids, _, requests = server.send_rows(
                features.iloc[positions], spec.feature_names, event_times.iloc[positions], batch_rows
            )
            sent[day] = (request_ids, positions, requests)
        total = sum(len(ids) for ids, _, _ in sent.values())
        # labels only make sense next to predictions that are really in the log
        server.wait_until_written(written_before + total, total, flush_timeout)
    finally:
        server.close()

    replayed = []
    for day, (request_ids, positions, requests) in sent.items():
        rows = frame.iloc[positions]
        labels = rows[[spec.target]].rename(columns={spec.target: "label"}).reset_index(drop=True)
        labels.insert(0, "request_id", request_ids)
        labels["label_timestamp"] = rows[spec.timestamp_column].to_numpy()
        files = write_labels(settings.inference_log, labels, day=day) if len(labels) else []
        replayed.append(SentDay(day, len(rows), requests, tuple(files)))
    return replayed


def main(argv: list[str] | None = None) -> int:
    """The ``python -m include.monitoring.replay`` command; returns the exit status (0, or 1 for a traffic error).

    A bad spec or argument exits through ``argparse`` (``SystemExit`` with status 2).
    """
    from include.data.spec import SpecError, load_spec
    from include.settings import Settings
    from include.util.cli import parse_date_arg

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m include.monitoring.replay",
        description="Send landed rows to a running model server with their own event times, then store "
        "their labels next to the predictions.",
    )
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    parser.add_argument("--start", type=parse_date_arg, required=True, help="first day replayed, YYYY-MM-DD")
    parser.add_argument("--end", type=parse_date_arg, help="first day not replayed (default: every later day)")
    parser.add_argument(
        "--url", default=settings.serving_url, help=f"the model server's base URL (default: {settings.serving_url})"
    )
    parser.add_argument(
        "--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help=f"rows per request (default {DEFAULT_BATCH_ROWS})"
    )
    parser.add_argument(
        "--flush-timeout",
        type=float,
        default=DEFAULT_FLUSH_TIMEOUT,
        help=f"seconds to wait for the server to log every row (default {DEFAULT_FLUSH_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec or settings.dataset_spec)
        days = replay(
            settings, spec, args.url, args.start, args.end, batch_rows=args.batch_rows, flush_timeout=args.flush_timeout
        )
    except (SpecError, ValueError) as exc:
        parser.error(str(exc))
    except TrafficError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for day in days:
        print(f"{day.day}  {day.rows:>6} rows  {day.requests:>5} requests  labels stored")
    print(
        f"replayed {sum(day.rows for day in days)} rows of {spec.name} to {args.url}; labels in "
        f"{settings.inference_log}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
