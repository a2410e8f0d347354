"""Concurrent requests share model calls, and each still gets exactly its own answer.

The served model is the project's own (a ``torch_mlp`` trained and logged by
``train_and_log`` into a real SQLite registry); the app runs in process, its
requests sent concurrently on one event loop through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from include.monitoring.inference_log import read_window
from include.serving.app import create_app
from include.serving.batching import MicroBatcher
from include.serving.model import ServedModel, direct_predictor, load_served_model
from include.training.model import as_model_input
from include.training.train import TrainingConfig, train_and_log
from tests.unit.churn_frame import make_frame
from tests.unit.serving_models import ChurnModel, private_registry, register

MODEL_NAME = "customer_churn"


@pytest.fixture(scope="module")
def project_model(tmp_path_factory):
    """(tracking URI, version) of a registered torch_mlp, and rows to score."""
    from include.data.spec import load_spec
    from include.registry import register_challenger

    with private_registry(tmp_path_factory.mktemp("batching-home")) as settings:
        spec = load_spec(settings.dataset_spec)
        config = TrainingConfig(model_type="torch_mlp", epochs=2, learning_rate=0.01, batch_size=128, seed=3)
        result = train_and_log(make_frame(spec, 1200, seed=5), spec, config, settings)
        version = register_challenger(MODEL_NAME, result.model_uri, result.run_id, {})
        generic = register(MODEL_NAME, ChurnModel())
        rows = as_model_input(make_frame(spec, 120, seed=9), spec).reset_index(drop=True)
        yield settings.tracking_uri, version, generic, rows


def one_row(rows: pd.DataFrame, index: int) -> dict:
    row = rows.iloc[[index]]
    return {"dataframe_split": {"columns": list(row.columns), "data": json.loads(row.to_json(orient="values"))}}


def registered_probabilities(tracking_uri: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    """What the registered version itself answers, through MLflow's own pyfunc predict."""
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    return model.predict(frame)["probability"].to_numpy()


def test_the_projects_model_is_predicted_directly_and_other_pyfuncs_through_mlflow(project_model):
    tracking_uri, version, generic, rows = project_model

    served = load_served_model(MODEL_NAME, version, tracking_uri)
    other = load_served_model(MODEL_NAME, generic, tracking_uri)

    assert served.direct is not None
    assert other.direct is None, "a pyfunc the server knows nothing about keeps MLflow's schema enforcement"
    columns = {name: rows[name].to_numpy() for name in rows.columns}
    outputs = served.direct(columns)
    expected = served.pyfunc.predict(rows)
    assert list(outputs) == ["probability", "prediction"] == list(expected.columns)
    np.testing.assert_array_equal(outputs["probability"], expected["probability"].to_numpy())
    np.testing.assert_array_equal(outputs["prediction"], expected["prediction"].to_numpy())
    # no signature to check against: the server cannot vouch for the columns, MLflow must
    assert direct_predictor(served.pyfunc, None) is None


def test_requests_sharing_a_model_call_get_exactly_their_own_answers(project_model):
    tracking_uri, version, _, rows = project_model
    served = load_served_model(MODEL_NAME, version, tracking_uri)
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(max_rows=256, observe=lambda requests, batch_rows: calls.append((requests, batch_rows)))
    # requests of 1, 2 and 3 rows, in an order that mixes them
    slices = [rows.iloc[start : start + size] for start, size in zip(range(0, 60, 3), [1, 2, 3] * 7, strict=False)]

    async def all_at_once():
        return await asyncio.gather(
            *(batcher.predict(served, {n: part[n].to_numpy() for n in part.columns}) for part in slices)
        )

    answers = asyncio.run(all_at_once())

    assert calls == [(len(slices), sum(len(part) for part in slices))], "one model call for all of them"
    for part, outputs in zip(slices, answers, strict=False):
        alone = served.direct({name: part[name].to_numpy() for name in part.columns})
        assert list(outputs) == list(alone)
        np.testing.assert_array_equal(outputs["probability"], alone["probability"])
        np.testing.assert_array_equal(outputs["prediction"], alone["prediction"])
        np.testing.assert_array_equal(outputs["probability"], served.pyfunc.predict(part)["probability"].to_numpy())


def test_a_batch_is_cut_at_max_rows_and_a_failing_request_fails_alone():
    def direct(columns):
        values = columns["x"]
        if (values < 0).any():
            raise ValueError("negative input")
        return {"probability": values / 10.0, "prediction": (values > 5).astype(np.int64)}

    served = ServedModel("m", "1", pyfunc=None, columns=None, direct=direct)
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(max_rows=4, observe=lambda requests, rows: calls.append((requests, rows)))
    inputs = [np.array([1.0, 2.0]), np.array([3.0]), np.array([-1.0]), np.array([4.0, 6.0]), np.array([7.0])]

    async def all_at_once():
        return await asyncio.gather(
            *(batcher.predict(served, {"x": values}) for values in inputs), return_exceptions=True
        )

    answers = asyncio.run(all_at_once())

    for values, answer in zip(inputs, answers, strict=False):
        if (values < 0).any():
            assert isinstance(answer, ValueError)
        else:
            np.testing.assert_array_equal(answer["probability"], values / 10.0)
            np.testing.assert_array_equal(answer["prediction"], (values > 5).astype(np.int64))
    # [1,2]+[3]+[-1] failed together and were retried alone; [4,6]+[7] made the second call
    assert (2, 3) in calls and (1, 2) in calls and (1, 1) in calls
    assert all(rows <= 4 for _, rows in calls)


def test_concurrent_http_requests_answer_log_and_count_each_request(project_model, tmp_path):
    tracking_uri, version, _, rows = project_model
    log_root = tmp_path / "inference-log"
    app = create_app(
        MODEL_NAME, version, tracking_uri, inference_log=log_root, log_flush_seconds=3600, batch_max_wait_ms=5
    )
    request_ids = [f"req-{uuid.uuid4().hex[:8]}-{index}" for index in range(len(rows))]

    async def serve_all():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
                responses = await asyncio.gather(
                    *(
                        client.post(
                            "/invocations",
                            json=one_row(rows, index),
                            headers={"X-Request-ID": request_ids[index], "X-Request-Time": "2026-05-04T10:00:00Z"},
                        )
                        for index in range(len(rows))
                    )
                )
                metrics = (await client.get("/metrics")).text
        return responses, metrics

    responses, metrics = asyncio.run(serve_all())

    expected = registered_probabilities(tracking_uri, version, rows)
    for index, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_ids"] == [request_ids[index]]
        assert body["predictions"][0]["probability"] == expected[index], "exactly the registered model's answer"
        assert body["predictions"][0]["prediction"] == int(expected[index] >= 0.5)
    batched = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("model_batch_requests_")
    }
    assert batched["model_batch_requests_sum"] == len(rows), "every request is counted in exactly one model call"
    assert batched["model_batch_requests_count"] <= len(rows)

    start = pd.Timestamp("2026-05-04", tz="UTC").to_pydatetime()
    logged = read_window(log_root, start, start + pd.Timedelta(days=1).to_pytimedelta())
    assert sorted(logged["request_id"]) == sorted(request_ids), "one log row per request, under its own id"
    by_id = logged.set_index("request_id")
    for index, request_id in enumerate(request_ids):
        assert by_id.loc[request_id, "probability"] == expected[index]
        assert by_id.loc[request_id, "tenure_months"] == rows.loc[index, "tenure_months"]


def test_the_command_line_sets_batching_and_refuses_nonsense(mlops_env):
    from include.serving.__main__ import parse_args
    from include.serving.app import DEFAULT_BATCH_MAX_ROWS

    defaults = parse_args(["--version", "3"], mlops_env)
    assert defaults.batch_max_rows == DEFAULT_BATCH_MAX_ROWS and defaults.batch_max_wait_ms == 0
    tuned = parse_args(["--version", "3", "--batch-max-rows", "1", "--batch-max-wait-ms", "2"], mlops_env)
    assert tuned.batch_max_rows == 1 and tuned.batch_max_wait_ms == 2
    for bad in (["--batch-max-rows", "0"], ["--batch-max-wait-ms", "-1"], ["--batch-max-wait-ms", "50"]):
        with pytest.raises(SystemExit):
            parse_args(["--version", "3", *bad], mlops_env)
