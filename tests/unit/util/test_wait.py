"""wait_until: the one poll loop behind every "wait until ready, or give up after N seconds"."""

from __future__ import annotations

import time

import pytest

from include.util.wait import wait_until


def test_returns_the_predicates_first_truthy_value():
    answers = iter([None, 0, "", {"state": "success"}, "never asked"])

    assert wait_until(lambda: next(answers), timeout=5, interval=0.01) == {"state": "success"}
    assert next(answers) == "never asked"


def test_a_condition_that_never_holds_times_out_naming_what_and_the_timeout():
    calls = []
    started = time.monotonic()

    with pytest.raises(TimeoutError, match=r"^DAG ml_training not parsed after 0\.2s$"):
        wait_until(lambda: calls.append(1), timeout=0.2, interval=0.02, what="DAG ml_training not parsed")

    assert 0.2 <= time.monotonic() - started < 2
    assert len(calls) >= 2  # tried again until the deadline, not given up after one look


def test_on_timeout_chooses_the_exception_and_sees_the_last_state():
    last = {"error": "no answer"}

    def probe():
        last["error"] = "HTTP 503"
        return False

    with pytest.raises(RuntimeError, match="not healthy: HTTP 503"):
        wait_until(probe, timeout=0, on_timeout=lambda: RuntimeError(f"not healthy: {last['error']}"))


def test_the_predicate_is_asked_once_even_with_no_time_left_and_its_errors_end_the_wait_at_once():
    assert wait_until(lambda: "ready", timeout=0) == "ready"

    def dead():
        raise ProcessLookupError("the server exited")

    started = time.monotonic()
    with pytest.raises(ProcessLookupError, match="exited"):
        wait_until(dead, timeout=30)
    assert time.monotonic() - started < 1


def test_the_pause_between_tries_goes_through_the_given_sleep():
    pauses = []
    answers = iter([False, False, True])

    assert wait_until(lambda: next(answers), timeout=60, interval=7, sleep=pauses.append) is True
    assert pauses == [7, 7]
