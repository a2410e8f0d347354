"""The smoke test every deployer runs before ``champion`` moves: real HTTP requests to the endpoint.

Shared by the local deployer (a process on 127.0.0.1) and the kubernetes deployer
(through the Service), so both profiles refuse a version for the same reasons:

- ``GET /health`` answers 200 and reports the version being deployed;
- ``POST /invocations`` with the sample answers one well-formed prediction per row
  (probability finite in [0, 1], label in {0, 1}), from that version (body and
  ``X-Model-Version`` header), and within ``tolerance`` of ``expected`` when given;
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
from include.serving import validate_version

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
    import requests

    session = requests.Session()
    # loopback or cluster-internal endpoints: a proxy from the environment must not be used
    session.trust_env = False
    return session


def request(session: requests.Session, method: str, url: str, *, json_body: Any = None, body: bytes | None = None,
            timeout: float = DEFAULT_REQUEST_TIMEOUT) -> requests.Response:
    import requests

    data = json.dumps(json_body).encode() if json_body is not None else body
    try:
        return session.request(method, url, data=data, timeout=timeout,
                               headers={"Content-Type": "application/json"} if data is not None else None)
    except requests.RequestException as exc:
        raise EndpointError(f"{method} {url} failed: {exc}") from exc


def served_version(session: requests.Session, url: str, timeout: float = 2.0) -> str | None:
    """The version ``/health`` reports, or None when it does not answer 200 with one."""
    try:
        response = request(session, "GET", f"{url}/health", timeout=timeout)
    except EndpointError:
        return None
    payload = json_or_none(response) if response.status_code == 200 else None
    version = payload.get("model_version") if isinstance(payload, dict) else None
    return None if version is None else str(version)


def smoke_test(url: str, version: str, sample: pd.DataFrame, expected: np.ndarray | None = None,
               tolerance: float = 1e-6, *, session: requests.Session | None = None,
               request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> SmokeResult:
    """Real requests against ``url``; raises SmokeTestFailed listing every failed check."""
    import numpy as np

    version = validate_version(version)
    if len(sample) == 0:
        raise ValueError("the smoke test needs at least one sample row")
    expected_values = None
    if expected is not None:
        expected_values = np.asarray(expected, dtype=float).reshape(-1)
        if len(expected_values) != len(sample):
            raise ValueError(f"expected has {len(expected_values)} values for {len(sample)} sample rows")
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
        response = request(session, "POST", f"{url}/invocations", body=split_payload(sample),
                           timeout=request_timeout)
    except EndpointError as exc:
        response = None
        failures.append(f"POST /invocations: {exc}")
    latency_ms = (time.perf_counter() - started) * 1000
    if response is not None:
        compared = f", within {tolerance} of the expected probabilities" if expected is not None else ""
        record(f"{len(sample)} predictions well-formed{compared}",
               prediction_problems(response, version, len(sample), expected_values, tolerance))

    try:
        malformed = request(session, "POST", f"{url}/invocations", body=MALFORMED_BODY, timeout=request_timeout)
        record(f"malformed request refused with {malformed.status_code}",
               [] if 400 <= malformed.status_code < 500 else
               [f"a malformed request got HTTP {malformed.status_code}, expected a 4xx"])
    except EndpointError as exc:
        failures.append(f"a malformed request got no answer: {exc}")
    record("still healthy after the malformed request",
           health_problems(session, url, version, request_timeout, after="after the malformed request"))

    if failures:
        raise SmokeTestFailed(version, failures)
    return SmokeResult(version=version, url=url, rows=len(sample), checks=tuple(checks),
                       latency_ms=round(latency_ms, 3))


def health_problems(session: requests.Session, url: str, version: str,
                    timeout: float = DEFAULT_REQUEST_TIMEOUT, after: str = "") -> list[str]:
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


def prediction_problems(response: requests.Response, version: str, rows: int,
                        expected: np.ndarray | None, tolerance: float) -> list[str]:
    if response.status_code != 200:
        return [f"POST /invocations answered HTTP {response.status_code}: {message(response)}"]
    payload = json_or_none(response)
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        return [f"POST /invocations returned no 'predictions' list: {response.text[:200]!r}"]
    problems = []
    if response.headers.get("X-Model-Version") != version or str(payload.get("model_version")) != version:
        problems.append(f"POST /invocations was answered by version {response.headers.get('X-Model-Version')} "
                        f"(body: {payload.get('model_version')}), expected {version}")
    if len(predictions) != rows:
        return problems + [f"{len(predictions)} predictions for {rows} sample rows"]
    probabilities: list[float] = []
    bad_probability, bad_label = [], []
    for index, item in enumerate(predictions):
        probability = item.get("probability") if isinstance(item, dict) else None
        label = item.get("prediction") if isinstance(item, dict) else None
        if type(probability) not in (int, float) or not math.isfinite(probability) or not 0 <= probability <= 1:
            bad_probability.append(index)
        else:
            probabilities.append(float(probability))
        if type(label) is not int or label not in (0, 1):
            bad_label.append(index)
    if bad_probability:
        problems.append(f"probabilities not finite in [0, 1] in rows {_rows(bad_probability)} "
                        f"(e.g. {predictions[bad_probability[0]]!r})")
    if bad_label:
        problems.append(f"predictions not in {{0, 1}} in rows {_rows(bad_label)} "
                        f"(e.g. {predictions[bad_label[0]]!r})")
    if expected is not None and not bad_probability:
        differences = [abs(got - want) for got, want in zip(probabilities, expected.tolist())]
        off = [index for index, difference in enumerate(differences) if not difference <= tolerance]
        if off:
            problems.append(f"probabilities differ from the expected ones by up to {max(differences):.3g} "
                            f"(tolerance {tolerance}) in rows {_rows(off)}")
    return problems


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def message(response: requests.Response) -> str:
    payload = json_or_none(response)
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return response.text[:500]


def split_payload(sample: pd.DataFrame) -> bytes:
    """The sample in MLflow's ``dataframe_split`` format, at full float precision, NaN sent as null."""
    values = sample.astype(object).where(sample.notna(), None)
    payload = {"dataframe_split": {"columns": [str(name) for name in sample.columns],
                                   "data": values.to_numpy().tolist()}}
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
