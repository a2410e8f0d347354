"""A champion and a candidate in one server: shadow, canary, the admin rollout routes and per-version metrics.

The models are real pyfuncs (and the project's own model, predicted directly through the
micro-batcher) in a real SQLite registry; the inference log is real Parquet; only the HTTP
transport is in-process (TestClient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from include.monitoring.inference_log import read_window
from include.serving.app import create_app
from include.serving.rollout import bucket
from include.training.model import as_model_input
from include.training.train import TrainingConfig, train_and_log
from tests.unit.churn_frame import make_frame
from tests.unit.serving_models import (
    ChurnModel,
    RaisingModel,
    UnloadableModel,
    private_registry,
    register,
    sample_frame,
)

MODEL_NAME = "customer_churn"
REQUEST_TIME = "2026-03-02T10:00:00Z"
DAY_START = datetime(2026, 3, 2, tzinfo=UTC)
# the two-sided 99.9% normal quantile, for the binomial bounds of a canary's realised share
Z_999 = 3.2905


@dataclass
class Registry:
    tracking_uri: str
    champion: str
    candidate: str
    raising: str
    unloadable: str
    candidate_model: ChurnModel
    project_champion: str
    project_candidate: str
    project_rows: pd.DataFrame


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from include.data.spec import load_spec
    from include.registry import register_challenger

    with private_registry(tmp_path_factory.mktemp("rollout-home")) as settings:
        candidate_model = ChurnModel(regularization=0.001, seed=7)
        versions = [register(MODEL_NAME, model) for model in (ChurnModel(), candidate_model, RaisingModel())]
        unloadable = register(MODEL_NAME, UnloadableModel())
        spec = load_spec(settings.dataset_spec)
        project = []
        for seed in (3, 4):
            config = TrainingConfig(model_type="torch_mlp", epochs=2, learning_rate=0.01, batch_size=128, seed=seed)
            result = train_and_log(make_frame(spec, 800, seed=seed), spec, config, settings)
            project.append(register_challenger(MODEL_NAME, result.model_uri, result.run_id, {}))
        rows = as_model_input(make_frame(spec, 12, seed=9), spec).reset_index(drop=True)
        yield Registry(settings.tracking_uri, *versions, unloadable, candidate_model, *project, rows)


def serve(registry: Registry, version: str, log_root=None, **kwargs) -> TestClient:
    kwargs.setdefault("log_flush_seconds", 3600)
    return TestClient(create_app(MODEL_NAME, version, registry.tracking_uri, inference_log=log_root, **kwargs))


def split(frame: pd.DataFrame) -> dict:
    values = frame.astype(object).where(frame.notna(), None)
    return {"dataframe_split": {"columns": list(frame.columns), "data": values.to_numpy().tolist()}}


def post(client: TestClient, payload: dict, request_id: str, **headers):
    return client.post(
        "/invocations", json=payload, headers={"X-Request-ID": request_id, "X-Request-Time": REQUEST_TIME, **headers}
    )


def metrics(client: TestClient) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def logged(root) -> pd.DataFrame:
    return read_window(root, DAY_START, DAY_START + timedelta(days=1), with_labels=False)


# ----------------------------------------------------------------------- shadow


@pytest.mark.parametrize("kind", ["pyfunc", "project model (batched)"])
def test_shadow_answers_are_the_champions_bytes_and_the_candidates_predictions_are_logged(registry, tmp_path, kind):
    if kind == "pyfunc":
        champion, candidate, rows = registry.champion, registry.candidate, sample_frame(rows=6)
    else:
        champion, candidate, rows = registry.project_champion, registry.project_candidate, registry.project_rows
    requests = {f"{kind[:4]}-one": rows.iloc[[0]], f"{kind[:4]}-many": rows}
    with serve(registry, champion) as alone:
        expected = {rid: post(alone, split(part), rid) for rid, part in requests.items()}
    log_root = tmp_path / "log"
    with serve(registry, champion, log_root, candidate_version=candidate, rollout_mode="shadow") as client:
        answers = {rid: post(client, split(part), rid) for rid, part in requests.items()}
        assert client.get("/health").json()["candidate_version"] == candidate

    for rid, response in answers.items():
        assert response.status_code == 200
        assert response.content == expected[rid].content, "a shadow changed the champion's answer"
        assert response.headers["X-Model-Version"] == expected[rid].headers["X-Model-Version"] == champion
    frame = logged(log_root)
    assert len(frame) == 1 + len(rows)
    assert set(frame["model_version"]) == {champion} and set(frame["other_version"]) == {candidate}
    many = frame[frame["request_id"].str.startswith(f"{kind[:4]}-many-")].sort_values(
        "request_id", key=lambda ids: ids.str.rsplit("-", n=1).str[-1].astype(int)
    )
    import mlflow

    own = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{candidate}").predict(rows)
    np.testing.assert_allclose(many["other_probability"].to_numpy(), own["probability"].to_numpy(), rtol=0, atol=1e-6)
    assert many["other_prediction"].tolist() == own["prediction"].tolist()
    answered = [item["probability"] for item in answers[f"{kind[:4]}-many"].json()["predictions"]]
    np.testing.assert_array_equal(many["probability"].to_numpy(), answered)


def test_a_failing_shadow_candidate_never_fails_a_request_and_is_counted(registry, tmp_path):
    rows = sample_frame(rows=4)
    log_root = tmp_path / "log"
    with serve(registry, registry.champion) as alone:
        expected = post(alone, split(rows), "shadow-fails").content
    with serve(
        registry, registry.champion, log_root, candidate_version=registry.raising, rollout_mode="shadow"
    ) as client:
        responses = [post(client, split(rows), "shadow-fails") for _ in range(3)]
        counted = metrics(client)

    assert [response.status_code for response in responses] == [200] * 3
    assert all(response.content == expected for response in responses)
    assert counted[("model_shadow_errors_total", (("version", registry.raising),))] == 3
    frame = logged(log_root)
    assert len(frame) == 12 and frame["other_version"].isna().all() and frame["other_probability"].isna().all()


# ----------------------------------------------------------------------- canary


def keyed_rows(keys: list[int]) -> pd.DataFrame:
    frame = sample_frame(rows=len(keys), seed=11)
    frame["customer_id"] = keys
    return frame


def canary_versions(client: TestClient, keys: list[int], batch: int, tag: str) -> dict[int, str]:
    """The version that answered each key, sending ``batch`` keys per request."""
    answered = {}
    for start in range(0, len(keys), batch):
        part = keys[start : start + batch]
        response = post(client, split(keyed_rows(part)), f"{tag}-{start}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["predictions"]) == len(part) and all("probability" in item for item in body["predictions"])
        versions = body["model_versions"]
        everyone = set(versions)
        assert body["model_version"] == response.headers["X-Model-Version"]
        assert body["model_version"] == (versions[0] if len(everyone) == 1 else client_champion(client))
        answered.update(zip(part, versions, strict=True))
    return answered


def client_champion(client: TestClient) -> str:
    return client.get("/admin/rollout").json()["champion_version"]


def test_canary_rows_follow_their_sticky_key_within_the_binomial_bounds_and_across_a_restart(registry):
    share, keys = 0.2, list(range(100_000, 104_000))
    options = {"candidate_version": registry.candidate, "rollout_mode": "canary", "canary_share": share}
    with serve(registry, registry.champion, sticky_column="customer_id", **options) as client:
        first = canary_versions(client, keys, batch=400, tag="first")
        # the same keys grouped otherwise: each key keeps its version
        again = canary_versions(client, keys[::-1], batch=250, tag="again")
        raised = client.post(
            "/admin/rollout",
            json={
                "candidate_version": registry.candidate,
                "mode": "canary",
                "canary_share": 0.5,
                "sticky_column": "customer_id",
            },
        )
        assert raised.status_code == 200 and raised.json()["canary_share"] == 0.5
        after_raise = canary_versions(client, keys, batch=400, tag="raised")
    with serve(registry, registry.champion, sticky_column="customer_id", **options) as restarted:
        after_restart = canary_versions(restarted, keys, batch=500, tag="restart")

    to_candidate = [key for key in keys if first[key] == registry.candidate]
    bound = Z_999 * math.sqrt(share * (1 - share) / len(keys))
    assert abs(len(to_candidate) / len(keys) - share) <= bound
    assert all((first[key] == registry.candidate) == (bucket(key) < share) for key in keys)
    assert again == first and after_restart == first
    assert all(after_raise[key] == registry.candidate for key in to_candidate), "raising the share moved keys back"
    raised_share = sum(version == registry.candidate for version in after_raise.values()) / len(keys)
    assert abs(raised_share - 0.5) <= Z_999 * math.sqrt(0.25 / len(keys))


def test_without_the_sticky_column_a_request_goes_whole_by_its_request_id(registry):
    rows = sample_frame(rows=3)
    options = {"candidate_version": registry.candidate, "rollout_mode": "canary", "canary_share": 0.5}
    with serve(registry, registry.champion, sticky_column="customer_id", **options) as client:
        for index in range(20):
            request_id = f"whole-{index}"
            body = post(client, split(rows), request_id).json()
            wanted = registry.candidate if bucket(request_id) < 0.5 else registry.champion
            assert body["model_versions"] == [wanted] * 3 and body["model_version"] == wanted
            assert body["request_ids"] == [f"{request_id}-{row}" for row in range(3)]


def test_score_with_candidate_answers_alone_and_only_where_allowed(registry):
    rows = sample_frame(rows=5)
    options = {"candidate_version": registry.candidate, "rollout_mode": "shadow"}
    with serve(registry, registry.champion, **options) as client:
        response = post(client, split(rows), "smoke", **{"X-Score-With": "candidate"})
        assert response.status_code == 200 and response.headers["X-Model-Version"] == registry.candidate
        probabilities = [item["probability"] for item in response.json()["predictions"]]
        np.testing.assert_allclose(probabilities, registry.candidate_model.probabilities(rows), rtol=0, atol=1e-9)
    with serve(registry, registry.champion, enable_admin=False, **options) as closed:
        assert post(closed, split(rows), "smoke", **{"X-Score-With": "candidate"}).status_code == 403
    with serve(registry, registry.champion) as alone:
        assert post(alone, split(rows), "smoke", **{"X-Score-With": "candidate"}).status_code == 409


# ------------------------------------------------------------ admin and metrics


def test_the_admin_rollout_routes_start_change_and_end_a_rollout(registry):
    no_rollout = {
        "champion_version": registry.champion,
        "candidate_version": None,
        "mode": None,
        "canary_share": 0.0,
        "sticky_column": None,
    }
    with serve(registry, registry.champion) as client:
        assert client.get("/admin/rollout").json() == no_rollout
        started = client.post("/admin/rollout", json={"candidate_version": registry.candidate, "mode": "shadow"})
        assert started.status_code == 200
        assert started.json() == {**no_rollout, "candidate_version": registry.candidate, "mode": "shadow"}
        loaded = client.app.state.serving.rollout.candidate
        change = {"candidate_version": registry.candidate, "mode": "canary", "canary_share": 0.05}
        assert client.post("/admin/rollout", json=change).json()["canary_share"] == 0.05
        assert client.app.state.serving.rollout.candidate is loaded, "a share change reloaded the candidate"
        failed = client.post("/admin/rollout", json={"candidate_version": registry.unloadable, "mode": "shadow"})
        assert failed.status_code == 500 and failed.json()["error_code"] == "ROLLOUT_FAILED"
        assert client.get("/admin/rollout").json()["candidate_version"] == registry.candidate
        for bad in (
            {"candidate_version": registry.champion, "mode": "shadow"},
            {"candidate_version": "2", "mode": "blue"},
        ):
            assert client.post("/admin/rollout", json=bad).status_code == 422
        assert client.delete("/admin/rollout").json() == no_rollout
        client.post("/admin/rollout", json={"candidate_version": registry.candidate, "mode": "shadow"})
        reloaded = client.post("/admin/reload", json={"version": registry.candidate})
        assert reloaded.status_code == 200
        assert client.get("/admin/rollout").json() == {**no_rollout, "champion_version": registry.candidate}


def test_metrics_have_a_series_per_version(registry):
    keys = list(range(200))
    options = {"candidate_version": registry.candidate, "rollout_mode": "canary", "canary_share": 0.3}
    with serve(registry, registry.champion, sticky_column="customer_id", **options) as client:
        answered = canary_versions(client, keys, batch=50, tag="metrics")
        counted = metrics(client)

    for version in (registry.champion, registry.candidate):
        rows = sum(value == version for value in answered.values())
        assert counted[("model_version_rows_total", (("version", version),))] == rows
        assert counted[("model_version_requests_total", (("status", "200"), ("version", version)))] >= 1
        assert counted[("model_version_latency_seconds_count", (("version", version),))] >= 1
        assert ("model_version_errors_total", (("version", version),)) in counted
    assert counted[("model_rollout_candidate", (("mode", "canary"), ("version", registry.candidate)))] == 1
    assert counted[("model_canary_share", ())] == 0.3
