"""The serving app, in process: request validation, both input formats, reload.

The models are real pyfuncs registered in a real SQLite registry; only the HTTP
transport is in-process (FastAPI's TestClient), the real server process is covered
by tests/integration/test_local_deploy.py.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient

from include.serving.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, INLINE_BODY_BYTES, create_app
from tests.unit.serving_models import (
    FEATURES,
    ChurnModel,
    RaisingModel,
    SlowChurnModel,
    UnloadableModel,
    WrongLengthModel,
    private_registry,
    register,
    sample_frame,
)

MODEL_NAME = "customer_churn"


@dataclass
class Registry:
    tracking_uri: str
    good: str
    other: str
    raising: str
    wrong_length: str
    unloadable: str
    slow: str
    good_model: ChurnModel
    other_model: ChurnModel


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module: creating an MLflow SQLite store costs seconds."""
    with private_registry(tmp_path_factory.mktemp("serving-home")) as settings:
        good_model, other_model = ChurnModel(), ChurnModel(regularization=0.001, seed=7)
        yield Registry(
            tracking_uri=settings.tracking_uri,
            good=register(MODEL_NAME, good_model),
            other=register(MODEL_NAME, other_model),
            raising=register(MODEL_NAME, RaisingModel()),
            wrong_length=register(MODEL_NAME, WrongLengthModel()),
            unloadable=register(MODEL_NAME, UnloadableModel()),
            slow=register(MODEL_NAME, SlowChurnModel(delay=1.5)),
            good_model=good_model,
            other_model=other_model,
        )


@pytest.fixture(scope="module")
def client(registry):
    """The default-configured app serving the good version, shared by the read-only tests."""
    with TestClient(create_app(MODEL_NAME, registry.good, registry.tracking_uri)) as test_client:
        yield test_client


def records(frame) -> dict:
    return {"dataframe_records": frame.to_dict(orient="records")}


def split(frame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}


def assert_answers(client: TestClient, registry: Registry, version: str | None = None) -> None:
    """The app still serves correct predictions (used after every rejected request)."""
    sample = sample_frame(rows=2)
    response = client.post("/invocations", json=split(sample))
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == (version or registry.good)


def test_health_reports_the_loaded_version(client, registry):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_name": MODEL_NAME, "model_version": registry.good}


def test_health_is_503_while_no_model_is_loaded(registry):
    # without entering the client the app's start-up (the model load) never runs
    unstarted = TestClient(create_app(MODEL_NAME, registry.good, registry.tracking_uri))

    assert unstarted.get("/health").status_code == 503
    assert unstarted.post("/invocations", json=split(sample_frame(1))).status_code == 503


@pytest.mark.parametrize("to_payload", [records, split], ids=["dataframe_records", "dataframe_split"])
def test_both_input_formats_return_the_models_probabilities(client, registry, to_payload):
    sample = sample_frame(rows=5)
    expected = registry.good_model.probabilities(sample)

    response = client.post("/invocations", json=to_payload(sample))

    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Model-Version"] == registry.good
    assert body["model_version"] == registry.good
    assert [set(item) for item in body["predictions"]] == [{"probability", "prediction"}] * 5
    np.testing.assert_allclose([item["probability"] for item in body["predictions"]], expected, rtol=0, atol=1e-12)
    assert [item["prediction"] for item in body["predictions"]] == (expected >= 0.5).astype(int).tolist()


def mlflow_forms(frame) -> dict[str, dict]:
    """``frame`` in each JSON form of MLflow's scoring protocol."""
    rows = frame.to_dict(orient="records")
    columns = {name: frame[name].tolist() for name in frame.columns}
    return {
        "dataframe_records": {"dataframe_records": rows},
        "dataframe_split": split(frame),
        "dataframe_split with an index": {
            "dataframe_split": {**split(frame)["dataframe_split"], "index": list(range(len(frame)))}
        },
        "instances as records": {"instances": rows},
        "instances as columns": {"instances": columns},
        "inputs as records": {"inputs": rows},
        "inputs as columns": {"inputs": columns},
        "records with params": {"dataframe_records": rows, "params": {"threshold": 0.5}},
        "records with null params": {"dataframe_records": rows, "params": None},
        "records beside a key MLflow ignores": {"dataframe_records": rows, "client": "batch-7"},
    }


FORMS = list(mlflow_forms(sample_frame(1)))


@pytest.mark.parametrize("form", FORMS)
def test_every_json_form_of_mlflows_protocol_gets_the_models_probabilities(client, registry, form):
    sample = sample_frame(rows=4)

    response = client.post("/invocations", json=mlflow_forms(sample)[form])

    assert response.status_code == 200, response.text
    got = [item["probability"] for item in response.json()["predictions"]]
    np.testing.assert_allclose(got, registry.good_model.probabilities(sample), rtol=0, atol=1e-12)


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_one_record_as_an_object_is_one_row(client, registry, key):
    sample = sample_frame(rows=1)

    response = client.post("/invocations", json={key: sample.to_dict(orient="records")[0]})

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["probability"] == pytest.approx(
        registry.good_model.probabilities(sample)[0], abs=1e-12
    )


def test_a_csv_body_is_read_as_mlflow_reads_it(client, registry):
    sample = sample_frame(rows=3)
    body = sample[list(reversed(FEATURES))].assign(note="extra").to_csv(index=False)

    response = client.post("/invocations", content=body, headers={"Content-Type": "text/csv; charset=utf-8"})

    assert response.status_code == 200, response.text
    got = [item["probability"] for item in response.json()["predictions"]]
    np.testing.assert_allclose(got, registry.good_model.probabilities(sample), rtol=0, atol=1e-12)


def test_a_parquet_body_is_read_as_mlflow_reads_it(client, registry):
    sample = sample_frame(rows=3)

    response = client.post(
        "/invocations", content=sample.to_parquet(), headers={"Content-Type": "application/vnd.apache.parquet"}
    )

    assert response.status_code == 200, response.text
    got = [item["probability"] for item in response.json()["predictions"]]
    np.testing.assert_allclose(got, registry.good_model.probabilities(sample), rtol=0, atol=1e-12)


CSV_ERRORS = {
    "empty body": (b"", 400, "empty"),
    "header only": (",".join(FEATURES).encode() + b"\n", 400, "no rows"),
    "missing column": (b"tenure_months,support_calls\n12,2\n", 422, "monthly_charges"),
    "empty field": (b"tenure_months,monthly_charges,support_calls\n12,,2\n", 422, "monthly_charges"),
    "word in a number": (b"tenure_months,monthly_charges,support_calls\ntwelve,50,2\n", 422, "tenure_months"),
    "not a table": (b'tenure_months,monthly_charges\n"12,5\n', 400, "CSV"),
}


@pytest.mark.parametrize("case", CSV_ERRORS, ids=list(CSV_ERRORS))
def test_a_bad_csv_body_is_a_4xx_naming_what_is_wrong(client, registry, case):
    body, status, mentioned = CSV_ERRORS[case]

    response = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})

    assert response.status_code == status, response.text
    assert mentioned in response.json()["message"]
    assert_answers(client, registry)


def test_integers_extra_columns_and_any_column_order_are_accepted(client, registry):
    # JSON has no float/int distinction: 12 must be accepted for a double feature
    row = {"support_calls": 2, "customer_id": "c-17", "monthly_charges": 80, "tenure_months": 12}
    expected = registry.good_model.probabilities(
        sample_frame(1).assign(tenure_months=12.0, monthly_charges=80.0, support_calls=2.0)
    )

    response = client.post("/invocations", json={"dataframe_records": [row]})

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["probability"] == pytest.approx(expected[0], abs=1e-12)


def test_a_large_batch_is_predicted_off_the_event_loop_with_the_same_result(client, registry):
    sample = sample_frame(rows=2000)
    payload = json.dumps(split(sample)).encode()
    assert len(payload) > INLINE_BODY_BYTES

    response = client.post("/invocations", content=payload, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    probabilities = [item["probability"] for item in response.json()["predictions"]]
    np.testing.assert_allclose(probabilities, registry.good_model.probabilities(sample), rtol=0, atol=1e-12)


def _row(**overrides) -> dict:
    row = {"tenure_months": 12.0, "monthly_charges": 70.5, "support_calls": 1.0}
    row.update(overrides)
    return row


MALFORMED = {
    "not json": (b'{"dataframe_records": [', 400, "not valid JSON"),
    "empty body": (b"", 400, "empty"),
    "NaN in a column that is not nullable": (
        b'{"dataframe_records": [{"tenure_months": NaN, "monthly_charges": 1, "support_calls": 1}]}',
        422,
        "tenure_months",
    ),
    "Infinity": (
        b'{"dataframe_records": [{"tenure_months": Infinity, "monthly_charges": 1, "support_calls": 1}]}',
        422,
        "finite",
    ),
    "json list": (b"[1, 2, 3]", 400, "JSON object"),
    "unknown format": ({"records": [_row()]}, 400, "dataframe_records"),
    "params not an object": ({"dataframe_records": [_row()], "params": [1]}, 400, "params"),
    "instances rows of lists": ({"instances": [[1.0, 2.0, 3.0]]}, 400, "rows 0"),
    "instances records with different keys": (
        {"instances": [_row(), {"tenure_months": 1.0, "monthly_charges": 2.0}]},
        400,
        "support_calls",
    ),
    "inputs columns of different lengths": (
        {"inputs": {"tenure_months": [1.0, 2.0], "monthly_charges": [1.0], "support_calls": [1.0, 2.0]}},
        400,
        "lengths differ",
    ),
    "inputs mixing columns and values": (
        {"inputs": {"tenure_months": [1.0], "monthly_charges": 1.0, "support_calls": [1.0]}},
        400,
        "monthly_charges",
    ),
    "inputs a string": ({"inputs": "tenure_months"}, 400, "'inputs' must be"),
    "missing column (inputs)": ({"inputs": {"tenure_months": [1.0], "support_calls": [1.0]}}, 422, "monthly_charges"),
    "both formats": (
        {"dataframe_records": [_row()], "dataframe_split": {"columns": [], "data": []}},
        400,
        "exactly one",
    ),
    "records not a list": ({"dataframe_records": _row()}, 400, "list of objects"),
    "records of lists": ({"dataframe_records": [[1, 2, 3]]}, 400, "rows 0"),
    "no rows": ({"dataframe_records": []}, 400, "no rows"),
    "split without data": ({"dataframe_split": {"columns": list(FEATURES)}}, 400, "'data'"),
    "split row too short": (
        {"dataframe_split": {"columns": list(FEATURES), "data": [[1.0, 2.0, 3.0], [1.0, 2.0]]}},
        400,
        "rows 1",
    ),
    "split duplicate column": (
        {"dataframe_split": {"columns": ["tenure_months"] * 3, "data": [[1, 2, 3]]}},
        400,
        "twice",
    ),
    "missing column (records)": (
        {"dataframe_records": [{"tenure_months": 1.0, "monthly_charges": 2.0}]},
        422,
        "support_calls",
    ),
    "missing column (split)": (
        {"dataframe_split": {"columns": ["tenure_months", "support_calls"], "data": [[1.0, 2.0]]}},
        422,
        "monthly_charges",
    ),
    "missing key in one row": (
        {"dataframe_records": [_row(), {"tenure_months": 1.0, "monthly_charges": 2.0}]},
        422,
        "rows 1",
    ),
    "null value": ({"dataframe_records": [_row(), _row(monthly_charges=None)]}, 422, "monthly_charges"),
    "string value": ({"dataframe_records": [_row(tenure_months="twelve")]}, 422, "twelve"),
    "boolean value": ({"dataframe_records": [_row(support_calls=True)]}, 422, "support_calls"),
    "nested value": ({"dataframe_records": [_row(support_calls=[1])]}, 422, "support_calls"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_requests_get_a_clear_4xx_and_the_server_keeps_answering(client, registry, case):
    payload, status, mentioned = MALFORMED[case]
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == status, response.text
    error = response.json()
    assert error["error_code"] and mentioned in error["message"]
    assert_answers(client, registry)


@pytest.mark.parametrize(
    "content_type, mentioned",
    [
        ("text/plain", "text/csv"),
        ("application/json; charset=latin-1", "UTF-8"),
        ("application/json; format=pandas-split", "format"),
    ],
)
def test_an_unsupported_content_type_is_415(client, registry, content_type, mentioned):
    response = client.post(
        "/invocations", content=json.dumps(split(sample_frame(1))), headers={"Content-Type": content_type}
    )

    assert response.status_code == 415
    assert mentioned in response.json()["message"]
    assert_answers(client, registry)


def test_more_rows_than_the_default_limit_are_413(client, registry):
    rows = [_row()] * (DEFAULT_MAX_ROWS + 1)

    response = client.post("/invocations", json={"dataframe_records": rows})

    assert response.status_code == 413
    assert str(DEFAULT_MAX_ROWS) in response.json()["message"]
    assert client.post("/invocations", json={"dataframe_records": rows[:DEFAULT_MAX_ROWS]}).status_code == 200


def test_a_body_over_the_size_limit_is_413_with_or_without_a_content_length(client, registry):
    oversized = b'{"dataframe_records": [' + b" " * DEFAULT_MAX_BODY_BYTES + b"]}"

    declared = client.post("/invocations", content=oversized, headers={"Content-Type": "application/json"})
    # a generator body is sent chunked, without Content-Length
    chunked = client.post(
        "/invocations",
        content=(oversized[i : i + 65536] for i in range(0, len(oversized), 65536)),
        headers={"Content-Type": "application/json"},
    )

    assert declared.status_code == 413 and chunked.status_code == 413
    assert "larger than" in chunked.json()["message"]
    assert_answers(client, registry)


def test_a_model_that_raises_gets_500_and_the_server_keeps_answering(registry):
    with TestClient(create_app(MODEL_NAME, registry.raising, registry.tracking_uri)) as raising_client:
        response = raising_client.post("/invocations", json=split(sample_frame(2)))

        assert response.status_code == 500
        assert "feature pipeline exploded" in response.json()["message"]
        assert raising_client.get("/health").status_code == 200


def test_a_model_output_with_the_wrong_length_is_a_500_not_a_wrong_answer(registry):
    with TestClient(create_app(MODEL_NAME, registry.wrong_length, registry.tracking_uri)) as wrong_client:
        response = wrong_client.post("/invocations", json=split(sample_frame(3)))

    assert response.status_code == 500
    assert "2 predictions for 3 rows" in response.json()["message"]


def test_an_invalid_version_or_a_missing_model_fails_at_start_up(registry):
    with pytest.raises(ValueError, match="positive integer"):
        create_app(MODEL_NAME, "latest", registry.tracking_uri)
    with pytest.raises(Exception, match="not found"):
        with TestClient(create_app(MODEL_NAME, "999", registry.tracking_uri)):
            pass


# ------------------------------------------------------------------------ reload


@pytest.fixture
def reloadable(registry):
    with TestClient(create_app(MODEL_NAME, registry.good, registry.tracking_uri)) as test_client:
        yield test_client


def test_reload_swaps_in_the_new_version(reloadable, registry):
    sample = sample_frame(rows=4)

    response = reloadable.post("/admin/reload", json={"version": registry.other})

    assert response.status_code == 200, response.text
    assert response.json()["previous_version"] == registry.good
    assert reloadable.get("/health").json()["model_version"] == registry.other
    answer = reloadable.post("/invocations", json=split(sample))
    assert answer.headers["X-Model-Version"] == registry.other
    probabilities = [item["probability"] for item in answer.json()["predictions"]]
    np.testing.assert_allclose(probabilities, registry.other_model.probabilities(sample), rtol=0, atol=1e-12)
    assert not np.allclose(probabilities, registry.good_model.probabilities(sample), atol=1e-3)


@pytest.mark.parametrize("version_kind", ["unloadable", "missing"])
def test_a_failed_reload_keeps_serving_the_old_version(reloadable, registry, version_kind):
    version = registry.unloadable if version_kind == "unloadable" else "999"
    sample = sample_frame(rows=3)

    response = reloadable.post("/admin/reload", json={"version": version})

    assert response.status_code == 500
    error = response.json()
    assert error["error_code"] == "RELOAD_FAILED" and error["model_version"] == registry.good
    assert ("corrupt" if version_kind == "unloadable" else "not found") in error["message"]
    assert reloadable.get("/health").json()["model_version"] == registry.good
    answer = reloadable.post("/invocations", json=split(sample))
    assert answer.headers["X-Model-Version"] == registry.good
    np.testing.assert_allclose(
        [item["probability"] for item in answer.json()["predictions"]],
        registry.good_model.probabilities(sample),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"version": "latest"}, 422),
        ({"version": "../3"}, 422),
        ({"version": True}, 422),
        ({}, 400),
        ([], 400),
    ],
)
def test_reload_refuses_a_bad_request(reloadable, registry, payload, status):
    response = reloadable.post("/admin/reload", json=payload)

    assert response.status_code == status, response.text
    assert reloadable.get("/health").json()["model_version"] == registry.good


def test_a_request_in_flight_during_a_reload_finishes_on_the_old_version(registry):
    sample = sample_frame(rows=1000)  # large enough to be predicted in a worker thread
    payload = json.dumps(split(sample)).encode()
    assert len(payload) > INLINE_BODY_BYTES
    in_flight: dict = {}

    with TestClient(create_app(MODEL_NAME, registry.slow, registry.tracking_uri)) as slow_client:

        def predict_slowly():
            in_flight["response"] = slow_client.post(
                "/invocations", content=payload, headers={"Content-Type": "application/json"}
            )

        request = threading.Thread(target=predict_slowly)
        request.start()
        time.sleep(0.5)  # the request is inside the 1.5 s prediction, the reload takes ~0.1 s
        reload = slow_client.post("/admin/reload", json={"version": registry.other})
        request.join(timeout=30)
        after = slow_client.post("/invocations", json=split(sample_frame(2)))

    assert reload.status_code == 200
    assert "response" in in_flight, "the slow request did not finish"
    assert in_flight["response"].headers["X-Model-Version"] == registry.slow
    assert in_flight["response"].json()["model_version"] == registry.slow
    assert after.headers["X-Model-Version"] == registry.other


def test_the_admin_endpoint_can_be_left_out(registry):
    with TestClient(create_app(MODEL_NAME, registry.good, registry.tracking_uri, enable_admin=False)) as closed:
        assert closed.post("/admin/reload", json={"version": registry.other}).status_code in (404, 405)
        assert closed.get("/health").json()["model_version"] == registry.good


# ---------------------------------------------------------------- command line


def test_the_command_line_refuses_a_non_loopback_host_unless_allowed(mlops_env):
    from include.serving.__main__ import parse_args

    with pytest.raises(SystemExit) as refused:
        parse_args(["--version", "3", "--host", "0.0.0.0"], mlops_env)
    remote = parse_args(["--version", "3", "--host", "0.0.0.0", "--allow-remote"], mlops_env)
    local = parse_args(["--version", "3"], mlops_env)

    assert refused.value.code == 2
    assert remote.enable_admin is False
    assert (local.host, local.port, local.enable_admin) == ("127.0.0.1", mlops_env.serving_port, True)
