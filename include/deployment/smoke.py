"""The smoke test every deployer runs before ``champion`` moves: real HTTP requests to the endpoint.

Shared by the local deployer (a process on 127.0.0.1) and the kubernetes deployer
(through the Service), so both profiles refuse a version for the same reasons:

- ``GET /health`` answers 200 and reports the version being deployed;
- ``POST /invocations`` with the sample answers one well-formed prediction per row
  (every output column of the task; probabilities finite in [0, 1]; a binary label
  in {0, 1}), from that version (body and ``X-Model-Version`` header), and equal to
  ``expected`` (the registered model's own output frame: numbers within
  ``tolerance``, class labels exactly) when given;
- a malformed body gets a 4xx, not a 5xx or a crash;
- ``/health`` still reports the version afterwards.

Every failed check is listed in one :class:`~include.deployment.SmokeTestFailed`.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from include.deployment import SmokeResult, SmokeTestFailed
from include.registry import validate_version

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import requests

# a body that cannot be JSON: the smoke test expects the server to refuse it with a 4xx
MALFORMED_BODY = b'{"dataframe_split": {"columns": ["a"], "data": [[1]'
DEFAULT_REQUEST_TIMEOUT = 10.0


class EndpointError(RuntimeError):
    """A request to the endpoint got no HTTP answer (refused, timed out, reset)."""


def new_session() -> requests.Session:
    """A ``requests.Session`` that ignores proxy settings from the environment."""
    import requests

    session = requests.Session()
    # loopback or cluster-internal endpoints: a proxy from the environment must not be used
    session.trust_env = False
    return session


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    body: bytes | None = None,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """Send ``json_body`` (or raw ``body``) to ``url`` with ``headers``; returns the ``requests.Response``,
    whatever its status.

    Raises :class:`EndpointError` when the request fails (connection refused, timeout, ...).
    """
    import requests

    data = json.dumps(json_body).encode() if json_body is not None else body
    try:
        return session.request(
            method,
            url,
            data=data,
            timeout=timeout,
            headers={**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})} or None,
        )
    except requests.RequestException as exc:
        raise EndpointError(f"{method} {url} failed: {exc}") from exc


def served_version(session: requests.Session, url: str, timeout: float = 2.0) -> str | None:
    """The version (a str) ``/health`` reports, or None when it does not answer 200 with one. Never raises."""
    try:
        response = request(session, "GET", f"{url}/health", timeout=timeout)
    except EndpointError:
        return None
    payload = json_or_none(response) if response.status_code == 200 else None
    version = payload.get("model_version") if isinstance(payload, dict) else None
    return None if version is None else str(version)


def expected_frame(expected: Any) -> pd.DataFrame | None:
    """``expected`` as a frame of output columns: a frame stays one, a 1-d array is the
    binary ``probability`` column (what callers passed before tasks existed). Returns a DataFrame, or None for None.
    """
    import numpy as np
    import pandas as pd

    if expected is None or isinstance(expected, pd.DataFrame):
        return expected
    return pd.DataFrame({"probability": np.asarray(expected, dtype=float).reshape(-1)})


def _checked_expected(sample: pd.DataFrame, expected: pd.DataFrame | np.ndarray | None) -> pd.DataFrame | None:
    """``expected`` as :func:`expected_frame` gives it, after checking it against ``sample``; raises ``ValueError``
    for an empty sample or an ``expected`` of another length."""
    if len(sample) == 0:
        raise ValueError("the smoke test needs at least one sample row")
    expected_values = expected_frame(expected)
    if expected_values is not None and len(expected_values) != len(sample):
        raise ValueError(f"expected has {len(expected_values)} values for {len(sample)} sample rows")
    return expected_values


def smoke_test(
    url: str,
    version: str,
    sample: pd.DataFrame,
    expected: pd.DataFrame | np.ndarray | None = None,
    tolerance: float = 1e-6,
    *,
    session: requests.Session | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> SmokeResult:
    """Real requests against ``url``; returns a :class:`SmokeResult`, raises SmokeTestFailed listing every failed check.

    ``sample`` is sent as it is (callers type it with :mod:`include.data.cast`);
    ``expected`` is the registered model's output frame for it (or the binary
    probabilities as a 1-d array). Raises ``ValueError`` for an empty sample or
    an ``expected`` of another length.
    """
    version = validate_version(version)
    expected_values = _checked_expected(sample, expected)
    session = session or new_session()
    failures: list[str] = []
    checks: list[str] = []

    def record(passed: str, problems: list[str]) -> None:
        failures.extend(problems)
        if not problems:
            checks.append(passed)

    record(f"/health reports version {version}", health_problems(session, url, version, request_timeout))

    started = time.perf_counter()
    try:
        response = request(session, "POST", f"{url}/invocations", body=split_payload(sample), timeout=request_timeout)
    except EndpointError as exc:
        response = None
        failures.append(f"POST /invocations: {exc}")
    latency_ms = (time.perf_counter() - started) * 1000
    if response is not None:
        compared = (
            f", within {tolerance} of the expected answers (the registered model's)" if expected is not None else ""
        )
        record(
            f"{len(sample)} predictions well-formed{compared}",
            prediction_problems(response, version, len(sample), expected_values, tolerance),
        )

    try:
        malformed = request(session, "POST", f"{url}/invocations", body=MALFORMED_BODY, timeout=request_timeout)
        record(
            f"malformed request refused with {malformed.status_code}",
            []
            if 400 <= malformed.status_code < 500
            else [f"a malformed request got HTTP {malformed.status_code}, expected a 4xx"],
        )
    except EndpointError as exc:
        failures.append(f"a malformed request got no answer: {exc}")
    record(
        "still healthy after the malformed request",
        health_problems(session, url, version, request_timeout, after="after the malformed request"),
    )

    if failures:
        raise SmokeTestFailed(version, failures)
    return SmokeResult(
        version=version, url=url, rows=len(sample), checks=tuple(checks), latency_ms=round(latency_ms, 3)
    )


def candidate_smoke_test(
    url: str,
    candidate: str,
    sample: pd.DataFrame,
    expected: pd.DataFrame | np.ndarray | None = None,
    tolerance: float = 1e-6,
    *,
    session: requests.Session | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> SmokeResult:
    """The smoke test of a rollout's candidate at ``url``, where the champion keeps answering.

    Checks that ``/health`` reports ``candidate`` as the rollout's candidate, then sends ``sample``
    with ``X-Score-With: candidate`` (:data:`include.serving.rollout.SCORE_WITH_HEADER`): the
    candidate answers it alone, and its predictions must be well-formed, from ``candidate``, and
    equal to ``expected`` (as :func:`smoke_test` compares them). Returns a :class:`SmokeResult`;
    raises :class:`SmokeTestFailed` listing every failed check, ``ValueError`` for an empty sample
    or an ``expected`` of another length.
    """
    candidate = validate_version(candidate)
    expected_values = _checked_expected(sample, expected)
    session = session or new_session()
    failures, checks = [], []
    try:
        health = request(session, "GET", f"{url}/health", timeout=request_timeout)
        reported = json_or_none(health)
        reported = str(reported.get("candidate_version")) if isinstance(reported, dict) else None
        if health.status_code != 200 or reported != candidate:
            failures.append(
                f"/health reports candidate version {reported} (HTTP {health.status_code}), expected {candidate}"
            )
        else:
            checks.append(f"/health reports candidate version {candidate}")
    except EndpointError as exc:
        failures.append(f"/health did not answer: {exc}")
    started = time.perf_counter()
    try:
        response = request(
            session,
            "POST",
            f"{url}/invocations",
            body=split_payload(sample),
            timeout=request_timeout,
            headers={"X-Score-With": "candidate"},
        )
    except EndpointError as exc:
        response = None
        failures.append(f"POST /invocations: {exc}")
    latency_ms = (time.perf_counter() - started) * 1000
    if response is not None:
        problems = prediction_problems(response, candidate, len(sample), expected_values, tolerance)
        failures.extend(problems)
        if not problems:
            checks.append(f"{len(sample)} candidate predictions well-formed and as expected")
    if failures:
        raise SmokeTestFailed(candidate, failures)
    return SmokeResult(candidate, url, len(sample), tuple(checks), round(latency_ms, 3))


def health_problems(
    session: requests.Session, url: str, version: str, timeout: float = DEFAULT_REQUEST_TIMEOUT, after: str = ""
) -> list[str]:
    """What is wrong with ``/health`` at ``url`` for ``version``: a list of messages, empty when all is well.

    Never raises.
    """
    suffix = f" {after}" if after else ""
    try:
        response = request(session, "GET", f"{url}/health", timeout=timeout)
    except EndpointError as exc:
        return [f"/health did not answer{suffix}: {exc}"]
    if response.status_code != 200:
        return [f"/health answered HTTP {response.status_code}{suffix}: {message(response)}"]
    reported = json_or_none(response)
    reported_version = str(reported.get("model_version")) if isinstance(reported, dict) else None
    if reported_version != version:
        return [f"/health reports version {reported_version}{suffix}, expected {version}"]
    return []


def prediction_problems(
    response: requests.Response, version: str, rows: int, expected: pd.DataFrame | None, tolerance: float
) -> list[str]:
    """What is wrong with a ``/invocations`` response for ``rows`` rows of ``version``.

    Returns a list of messages (status, shape, values off ``expected`` by more than ``tolerance``), empty when none.
    """
    if response.status_code != 200:
        return [f"POST /invocations answered HTTP {response.status_code}: {message(response)}"]
    payload = json_or_none(response)
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        return [f"POST /invocations returned no 'predictions' list: {response.text[:200]!r}"]
    problems = []
    if response.headers.get("X-Model-Version") != version or str(payload.get("model_version")) != version:
        problems.append(
            f"POST /invocations was answered by version {response.headers.get('X-Model-Version')} "
            f"(body: {payload.get('model_version')}), expected {version}"
        )
    if len(predictions) != rows:
        return problems + [f"{len(predictions)} predictions for {rows} sample rows"]
    columns = list(expected.columns) if expected is not None else ["prediction"]
    binary = "probability" in columns and not any(name.startswith("probability_") for name in columns)
    incomplete, bad_probability, bad_label, off, largest = [], [], [], [], 0.0
    for index, item in enumerate(predictions):
        if not isinstance(item, dict) or any(name not in item for name in columns):
            incomplete.append(index)
            continue
        for name in columns:
            value = item[name]
            numeric = type(value) in (int, float)
            if name.startswith("probability") and not (numeric and math.isfinite(value) and 0 <= value <= 1):
                bad_probability.append(index)
            elif name == "prediction" and binary and (type(value) is not int or value not in (0, 1)):
                bad_label.append(index)
            elif expected is not None:
                want = expected[name].iloc[index]
                if isinstance(want, str) or not numeric:
                    if value != (want.item() if hasattr(want, "item") else want):
                        off.append(index)
                else:
                    difference = abs(float(value) - float(want))
                    largest = max(largest, difference if math.isfinite(difference) else math.inf)
                    if not difference <= tolerance:
                        off.append(index)
    for rows_found, what in (
        (incomplete, f"predictions without {', '.join(columns)}"),
        (bad_probability, "probabilities not finite in [0, 1]"),
        (bad_label, "predictions not in {0, 1}"),
    ):
        if rows_found:
            rows_found = sorted(set(rows_found))
            problems.append(f"{what} in rows {_rows(rows_found)} (e.g. {predictions[rows_found[0]]!r})")
    if off:
        problems.append(
            f"predictions differ from the expected ones, the registered model's (largest numeric difference "
            f"{largest:.3g}, tolerance {tolerance}) in rows {_rows(sorted(set(off)))}"
        )
    return problems


def json_or_none(response: requests.Response) -> Any:
    """The response's JSON body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def message(response: requests.Response) -> str:
    """The server's error message from a response: its JSON ``message``, else the first 500 characters of the body."""
    payload = json_or_none(response)
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return response.text[:500]


def split_payload(sample: pd.DataFrame) -> bytes:
    """The sample in MLflow's ``dataframe_split`` format, at full float precision, NaN sent as null.

    Returns the JSON as UTF-8 bytes. Raises ``TypeError`` for a value JSON cannot carry, ``ValueError`` for
    an infinite number.
    """
    values = sample.astype(object).where(sample.notna(), None)
    payload = {
        "dataframe_split": {"columns": [str(name) for name in sample.columns], "data": values.to_numpy().tolist()}
    }
    return json.dumps(payload, default=_json_value, allow_nan=False).encode()


def _rows(indices: list[int], shown: int = 5) -> str:
    text = ", ".join(str(index) for index in indices[:shown])
    return text + (f" and {len(indices) - shown} more" if len(indices) > shown else "")


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} value to the server")
