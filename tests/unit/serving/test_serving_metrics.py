"""Request ids, event times, the inference log and /metrics of the serving app, in process.

The models are real pyfuncs in a real SQLite registry and the inference log is real
Parquet in a temporary folder; only the HTTP transport is in-process (TestClient).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from include.monitoring.inference_log import read_window
from include.serving.app import create_app
from tests.unit.serving_models import ChurnModel, private_registry, register, sample_frame

MODEL_NAME = "customer_churn"
UUID_LENGTH = 36


@dataclass
class Registry:
    tracking_uri: str
    good: str
    other: str
    good_model: ChurnModel


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module: creating an MLflow SQLite store costs seconds."""
    with private_registry(tmp_path_factory.mktemp("metrics-home")) as settings:
        good_model = ChurnModel()
        yield Registry(
            settings.tracking_uri,
            register(MODEL_NAME, good_model),
            register(MODEL_NAME, ChurnModel(regularization=0.001, seed=7)),
            good_model,
        )


@pytest.fixture
def log_root(tmp_path):
    return tmp_path / "inference-log"


def serve(registry: Registry, log_root=None, **kwargs) -> TestClient:
    # flushed only on shutdown unless a test asks otherwise: what is in the log then is what close() wrote
    kwargs.setdefault("log_flush_seconds", 3600)
    return TestClient(create_app(MODEL_NAME, registry.good, registry.tracking_uri, inference_log=log_root, **kwargs))


def split(frame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}


def metrics(client: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def day_window(root, day: date, **kwargs):
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return read_window(root, start, start + timedelta(days=1), **kwargs)


# ---------------------------------------------------------------- request ids


def test_each_row_gets_a_request_id_and_the_response_lists_them(registry):
    with serve(registry) as client:
        single = client.post("/invocations", json=split(sample_frame(1)))
        several = client.post("/invocations", json=split(sample_frame(3)))
        another = client.post("/invocations", json=split(sample_frame(1)))

    request_id = single.headers["X-Request-ID"]
    assert len(request_id) == UUID_LENGTH and uuid.UUID(request_id).version == 4
    assert single.json()["request_ids"] == [request_id]
    batch_id = several.headers["X-Request-ID"]
    assert several.json()["request_ids"] == [f"{batch_id}-0", f"{batch_id}-1", f"{batch_id}-2"]
    assert len({request_id, batch_id, another.headers["X-Request-ID"]}) == 3


def test_the_clients_request_id_is_used(registry):
    with serve(registry) as client:
        single = client.post("/invocations", json=split(sample_frame(1)), headers={"X-Request-ID": "order-17"})
        several = client.post("/invocations", json=split(sample_frame(2)), headers={"X-Request-ID": "order-18"})
        refused = client.post("/invocations", json={"dataframe_records": []}, headers={"X-Request-ID": "order-19"})

    assert single.headers["X-Request-ID"] == "order-17" and single.json()["request_ids"] == ["order-17"]
    assert several.json()["request_ids"] == ["order-18-0", "order-18-1"]
    # an error answer carries the id too, so a client can find it in the server's log
    assert refused.status_code == 400 and refused.headers["X-Request-ID"] == "order-19"


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "tab\there", "caf\u00e9"])
def test_a_malformed_request_id_is_refused(registry, request_id):
    with serve(registry) as client:
        response = client.post(
            "/invocations", json=split(sample_frame(1)), headers={"X-Request-ID": request_id.encode("latin-1")}
        )

    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST_ID"


# ------------------------------------------------------------- inference log


def test_answered_rows_are_logged_with_the_clients_event_time(registry, log_root):
    sample = sample_frame(3)
    with serve(registry, log_root) as client:
        response = client.post(
            "/invocations",
            json=split(sample),
            headers={"X-Request-Time": "2026-11-10T08:30:00+02:00", "X-Request-ID": "batch-1"},
        )
        single = client.post(
            "/invocations", json=split(sample_frame(1, seed=4)), headers={"X-Request-Time": "2026-11-10T23:59:59.5Z"}
        )
        assert response.status_code == 200 and single.status_code == 200
        assert metrics(client)[("inference_log_rows_written_total", ())] == 0  # buffered, not yet written
    # leaving the client shuts the app down, which flushes the log

    logged = day_window(log_root, date(2026, 11, 10), with_labels=False)
    assert logged["request_id"].tolist() == ["batch-1-0", "batch-1-1", "batch-1-2", single.headers["X-Request-ID"]]
    assert logged["timestamp"].astype(str).tolist() == ["2026-11-10 06:30:00+00:00"] * 3 + [
        "2026-11-10 23:59:59.500000+00:00"
    ]
    assert (logged["model_name"] == MODEL_NAME).all() and (logged["model_version"] == registry.good).all()
    np.testing.assert_array_equal(logged.loc[:2, list(sample.columns)].to_numpy(), sample.to_numpy())
    assert logged.loc[:2, "probability"].tolist() == [item["probability"] for item in response.json()["predictions"]]
    assert logged.loc[:2, "prediction"].tolist() == [item["prediction"] for item in response.json()["predictions"]]


def test_rows_without_a_request_time_are_logged_at_their_arrival(registry, log_root):
    before = datetime.now(UTC)
    with serve(registry, log_root) as client:
        client.post("/invocations", json=split(sample_frame(2)))
    after = datetime.now(UTC)

    logged = read_window(log_root, before - timedelta(seconds=1), after + timedelta(seconds=1))
    assert len(logged) == 2
    assert before <= logged["timestamp"].min() and logged["timestamp"].max() <= after


def test_the_log_is_written_while_serving_once_flush_rows_are_reached(registry, log_root):
    with serve(registry, log_root, log_flush_rows=4) as client:
        client.post("/invocations", json=split(sample_frame(5)), headers={"X-Request-Time": "2026-11-10T01:00:00Z"})
        for _ in range(100):
            if metrics(client)[("inference_log_rows_written_total", ())] == 5:
                break
            client.get("/health")
        assert metrics(client)[("inference_log_rows_written_total", ())] == 5
        assert len(day_window(log_root, date(2026, 11, 10))) == 5


@pytest.mark.parametrize("request_time", ["yesterday", "2026-11-10T08:30:00", "2026-11-10", "2026-13-01T00:00Z", ""])
def test_a_malformed_request_time_is_refused_and_nothing_is_logged(registry, log_root, request_time):
    with serve(registry, log_root) as client:
        response = client.post("/invocations", json=split(sample_frame(1)), headers={"X-Request-Time": request_time})
        assert metrics(client)[("inference_log_rows_pending", ())] == 0

    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST_TIME"
    assert "X-Request-Time" in response.json()["message"]
    assert not log_root.exists() or not list(log_root.rglob("*.parquet"))


def test_rejected_requests_are_not_logged(registry, log_root):
    with serve(registry, log_root) as client:
        client.post(
            "/invocations",
            json={"dataframe_records": [{"tenure_months": 1.0}]},
            headers={"X-Request-Time": "2026-11-10T01:00:00Z"},
        )
        client.post("/invocations", json=split(sample_frame(1)), headers={"X-Request-Time": "2026-11-10T02:00:00Z"})

    assert len(day_window(log_root, date(2026, 11, 10))) == 1


# -------------------------------------------------------------------- metrics


def test_metrics_count_requests_errors_latency_and_predictions(registry, log_root):
    sample = sample_frame(40)  # more than 16 rows: the histogram's vectorised path
    with serve(registry, log_root) as client:
        answers = [
            client.post("/invocations", json=split(sample)),
            client.post("/invocations", json=split(sample_frame(1))),
        ]
        client.post("/invocations", json={"dataframe_records": [{"tenure_months": 1.0}]})  # 422
        client.post("/invocations", content=b"not json", headers={"Content-Type": "application/json"})  # 400
        after = metrics(client)
    probabilities = np.array([item["probability"] for answer in answers for item in answer.json()["predictions"]])
    labels = [item["prediction"] for answer in answers for item in answer.json()["predictions"]]

    assert after[("model_requests_total", (("status", "200"),))] == 2
    assert after[("model_requests_total", (("status", "422"),))] == 1
    assert after[("model_requests_total", (("status", "400"),))] == 1
    assert after[("model_request_errors_total", ())] == 2
    assert after[("model_request_latency_seconds_count", ())] == 4
    assert 0 < after[("model_request_latency_seconds_sum", ())] < 10
    assert after[("model_prediction_probability_count", ())] == 41
    assert after[("model_prediction_probability_sum", ())] == pytest.approx(probabilities.sum())
    for bound in ("0.1", "0.5", "0.9", "1.0"):
        expected = int((probabilities <= float(bound)).sum())
        assert after[("model_prediction_probability_bucket", (("le", bound),))] == expected, bound
    assert after[("model_prediction_probability_bucket", (("le", "+Inf"),))] == 41
    for label in (0, 1):
        assert after.get(("model_predictions_total", (("prediction", str(label)),)), 0) == labels.count(label)
    assert after[("inference_log_enabled", ())] == 1
    assert after[("inference_log_rows_pending", ())] == 41


def test_a_small_request_lands_in_the_right_probability_bucket(registry):
    sample = sample_frame(1)
    probability = registry.good_model.probabilities(sample)[0]
    with serve(registry) as client:
        client.post("/invocations", json=split(sample))
        after = metrics(client)

    bound = next(bound for bound in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0) if probability <= bound)
    assert after[("model_prediction_probability_bucket", (("le", str(bound)),))] == 1
    below = round(bound - 0.1, 1)
    if below > 0:
        assert after[("model_prediction_probability_bucket", (("le", str(below)),))] == 0


def test_the_log_counters_report_what_was_written(registry, log_root):
    with serve(registry, log_root, log_flush_seconds=0.05) as client:
        client.post("/invocations", json=split(sample_frame(2)))
        for _ in range(200):
            if metrics(client)[("inference_log_rows_written_total", ())] == 2:
                break
        final = metrics(client)

    assert final[("inference_log_rows_written_total", ())] == 2
    assert final[("inference_log_rows_pending", ())] == 0
    assert final[("inference_log_write_errors_total", ())] == 0
    assert final[("inference_log_rows_dropped_total", ())] == 0
    assert (
        len(
            read_window(
                log_root,
                datetime.now(UTC) - timedelta(minutes=5),
                datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        == 2
    )


def test_without_an_inference_log_nothing_is_written_and_metrics_say_so(registry, tmp_path):
    with serve(registry) as client:
        assert client.post("/invocations", json=split(sample_frame(2))).status_code == 200
        values = metrics(client)

    assert values[("inference_log_enabled", ())] == 0
    assert values[("inference_log_rows_written_total", ())] == 0
    assert not list(tmp_path.rglob("*.parquet"))


def test_the_served_version_gauge_follows_a_reload(registry):
    with serve(registry) as client:
        before = metrics(client)
        assert client.post("/admin/reload", json={"version": registry.other}).status_code == 200
        after = metrics(client)
        failed = client.post("/admin/reload", json={"version": "999"})
        after_failed = metrics(client)

    def served(values):
        return {labels: value for (name, labels), value in values.items() if name == "model_served_version"}

    assert served(before) == {(("model_name", MODEL_NAME), ("version", registry.good)): 1}
    assert served(after) == {(("model_name", MODEL_NAME), ("version", registry.other)): 1}
    assert failed.status_code == 500
    assert served(after_failed) == served(after)


def test_two_apps_in_one_process_keep_their_own_counts(registry):
    with serve(registry) as first, serve(registry) as second:
        first.post("/invocations", json=split(sample_frame(1)))
        first.post("/invocations", json=split(sample_frame(1)))
        second.post("/invocations", json=split(sample_frame(1)))

        assert metrics(first)[("model_requests_total", (("status", "200"),))] == 2
        assert metrics(second)[("model_requests_total", (("status", "200"),))] == 1


def test_an_inference_log_that_cannot_be_written_never_fails_a_request(registry, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "predictions").write_text("a file where a folder should be")
    with serve(registry, blocked, log_flush_seconds=0.05) as client:
        response = client.post("/invocations", json=split(sample_frame(2)))
        for _ in range(200):
            if metrics(client)[("inference_log_write_errors_total", ())] >= 1:
                break
        values = metrics(client)

    assert response.status_code == 200
    assert values[("inference_log_write_errors_total", ())] >= 1
    assert values[("inference_log_rows_written_total", ())] == 0
    assert values[("inference_log_rows_pending", ())] == 2  # kept for a retry, not dropped


def test_bad_inference_log_settings_fail_when_the_app_is_created(registry):
    with pytest.raises(ValueError, match="log_flush_rows"):
        create_app(MODEL_NAME, registry.good, registry.tracking_uri, inference_log="/tmp/x", log_flush_rows=0)
    with pytest.raises(ValueError, match="inference_log"):
        create_app(MODEL_NAME, registry.good, registry.tracking_uri, inference_log=" ")


# ---------------------------------------------------------------- command line


def test_the_command_line_logs_to_the_settings_location_unless_told_otherwise(mlops_env):
    from include.serving.__main__ import parse_args

    default = parse_args(["--version", "3"], mlops_env)
    elsewhere = parse_args(["--version", "3", "--inference-log", "s3://bucket/log"], mlops_env)
    off = parse_args(["--version", "3", "--no-inference-log"], mlops_env)

    assert default.inference_log == mlops_env.inference_log
    assert elsewhere.inference_log == "s3://bucket/log"
    assert off.inference_log is None
    with pytest.raises(SystemExit):
        parse_args(["--version", "3", "--no-inference-log", "--inference-log", "/tmp/x"], mlops_env)
    with pytest.raises(SystemExit):
        parse_args(["--version", "3", "--inference-log-flush-rows", "0"], mlops_env)
