"""Polling until a condition holds: one loop for every "wait until ready, or give up after N seconds"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.5,
    what: str = "the condition not met",
    *,
    on_timeout: Callable[[], BaseException] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, for at most ``timeout`` seconds.

    ``predicate`` is always called at least once, and once more after the last pause, so a
    condition that holds at the deadline is still seen.

    Returns the predicate's first truthy value. Raises ``TimeoutError("<what> after <timeout>s")``
    when the time runs out, so ``what`` reads as the unmet state (``"DAG x not parsed"``); with
    ``on_timeout``, raises the exception it returns instead (it may clean up first, and put the
    last error seen into the message). Whatever ``predicate`` raises propagates at once: that is
    how a caller gives up early (a child process died, the API reported a hard failure).
    ``sleep`` is replaceable for tests and for callers that already inject one.
    """
    # monotonic: a wall-clock jump (NTP, DST) must neither cut a wait short nor stretch it
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            if on_timeout is not None:
                raise on_timeout()
            raise TimeoutError(f"{what} after {timeout:g}s")
        sleep(interval)
