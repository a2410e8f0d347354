"""The demo's live traffic during a rollout: customers sent now, as a client sends them, then labelled.

:func:`include.simulation.traffic.simulate` replays whole past days (each request stamped
with its simulated event time) for the drift check. A rollout is judged on the rows served
since it started, so this sends ``rows`` generated customers stamped with the time they are
sent, with the customer id beside the features: the server routes a canary by that
id (the spec's ``id_column``, the rollout's sticky key), so one customer always meets the
same version. Once the server has logged every row, their true outcomes are stored as
labels, as they would arrive later from the business (stamped ``now + 30 days``).
Nothing is landed in the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from include.simulation.traffic import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_FLUSH_TIMEOUT,
    LABEL_DELAY,
    ModelServerClient,
    check_url,
)

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings
    from include.simulation.drift import DriftConfig


@dataclass(frozen=True)
class LiveBatch:
    """What :func:`send_live` sent: ``rows`` in ``requests``, stamped ``sent_at`` (UTC), all labelled."""

    rows: int
    requests: int
    sent_at: datetime


def send_live(
    settings: Settings,
    spec: DatasetSpec,
    url: str,
    rows: int,
    seed: int,
    drift: DriftConfig | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    *,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> LiveBatch:
    """Send ``rows`` new customers (generated for today with ``seed`` and ``drift``) to the server at ``url``,
    stamped now, and store their labels in ``settings.inference_log``.

    Use a different ``seed`` for each batch: the same seed gives the same customers. Returns a
    :class:`LiveBatch`. Raises ``ValueError`` for a non-positive ``rows`` or ``batch_rows`` and for a spec
    whose id column is derived (no entity id to route by), and
    :class:`~include.simulation.traffic.TrafficError` as :func:`~include.simulation.traffic.simulate` does.
    """
    import pandas as pd

    from include.monitoring.inference_log import write_labels
    from include.simulation.generate import generate_day

    url = check_url(url)
    for name, value in (("rows", rows), ("batch_rows", batch_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if spec.derived_id:
        raise ValueError(f"{spec.name} has no id column of its own: live traffic routes canaries by customer id")
    sent_at = datetime.now(UTC)
    frame = generate_day(spec, sent_at.date(), rows, seed, drift)
    # the generator numbers a day's customers from 0 whatever the seed: new customers get new ids
    frame[spec.id_column] = [f"L{seed}-{index:06d}" for index in range(len(frame))]
    stamps = pd.Series([sent_at] * len(frame), index=frame.index)
    columns = [*spec.feature_names, spec.id_column]
    server = ModelServerClient(url)
    try:
        written_before, _ = server.rows_written()
        request_ids, _, requests = server.send_rows(frame, columns, stamps, batch_rows)
        server.wait_until_written(written_before + len(request_ids), len(request_ids), flush_timeout)
    finally:
        server.close()
    labels = pd.DataFrame(
        {
            "request_id": request_ids,
            "label": frame[spec.target].to_numpy(),
            "label_timestamp": sent_at + LABEL_DELAY,
        }
    )
    write_labels(settings.inference_log, labels, day=sent_at.date())
    return LiveBatch(rows=len(frame), requests=requests, sent_at=sent_at)
