"""Conformance with MLflow's scoring protocol: ``mlflow models serve`` and this project's server,
both serving one registered version of the project's model, get the same payloads.

Each payload must get the same predictions from both (within 1e-9), or a 4xx from both; where the
two differ by design, :data:`EXPECTED_DIFFERENCES` says how and why. The conformance table
(payload, MLflow's answer, ours) is written to ``scoring_protocol.md`` under the test's tmp dir
and printed.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from include.util.procs import ManagedProcess
from scripts.local_stack import free_port
from tests.unit.serving_models import private_registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "protocol"
START_TIMEOUT_S = 240
SPEC = """
    name: protocol
    location: /nonexistent/protocol
    task: binary
    target: churned
    positive_class: 1
    classes: [0, 1]
    expectation_suite: include/validation/suites/customer_churn.json
    features:
      - {name: tenure_months, type: numeric}
      - {name: monthly_charges, type: numeric, nullable: true}
      - {name: plan, type: categorical, categories: [basic, premium]}
      - {name: region, type: categorical, categories: [north, south], nullable: true}
"""
ROW = {"tenure_months": 12, "monthly_charges": 50.5, "plan": "basic", "region": "north"}
ROW2 = {"tenure_months": 30, "monthly_charges": 99.0, "plan": "premium", "region": "south"}
COLUMNS = list(ROW)
HEADER = ",".join(COLUMNS)


def _json(payload) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), "application/json"


def _raw(text: str, content_type: str = "application/json") -> tuple[bytes, str]:
    return text.encode(), content_type


def _without(row: dict, name: str) -> dict:
    return {key: value for key, value in row.items() if key != name}


PAYLOADS: dict[str, tuple[bytes, str]] = {
    "dataframe_records": _json({"dataframe_records": [ROW, ROW2]}),
    "dataframe_split": _json(
        {"dataframe_split": {"columns": COLUMNS, "data": [list(ROW.values()), list(ROW2.values())]}}
    ),
    "dataframe_split with index": _json(
        {"dataframe_split": {"columns": COLUMNS, "index": [7, 8], "data": [list(ROW.values()), list(ROW2.values())]}}
    ),
    "instances (records)": _json({"instances": [ROW, ROW2]}),
    "instances (columns)": _json({"instances": {name: [ROW[name], ROW2[name]] for name in COLUMNS}}),
    "instances (one record)": _json({"instances": ROW}),
    "inputs (records)": _json({"inputs": [ROW, ROW2]}),
    "inputs (columns)": _json({"inputs": {name: [ROW[name], ROW2[name]] for name in COLUMNS}}),
    "inputs (one record)": _json({"inputs": ROW}),
    "records + params": _json({"dataframe_records": [ROW], "params": {"threshold": 0.3}}),
    "text/csv": _raw(f"{HEADER}\n12,50.5,basic,north\n30,99.0,premium,south\n", "text/csv"),
    "Parquet": (
        pd.DataFrame([ROW, ROW2]).astype({"tenure_months": float}).to_parquet(),
        "application/vnd.apache.parquet",
    ),
    "Parquet, int64 column for a numeric feature": (
        pd.DataFrame([ROW, ROW2]).to_parquet(),
        "application/vnd.apache.parquet",
    ),
    "text/csv, empty field in nullable column": _raw(f"{HEADER}\n12,,basic,\n", "text/csv"),
    "text/csv, empty field in non-nullable column": _raw(f"{HEADER}\n,50.5,basic,north\n", "text/csv"),
    "text/csv, header only": _raw(f"{HEADER}\n", "text/csv"),
    "bare NaN in nullable column": _raw(
        '{"dataframe_records": [{"tenure_months": 12, "monthly_charges": NaN, "plan": "basic", "region": "north"}]}'
    ),
    "bare NaN in non-nullable column": _raw(
        '{"dataframe_records": [{"tenure_months": NaN, "monthly_charges": 50.5, "plan": "basic", "region": "north"}]}'
    ),
    "bare Infinity": _raw(
        '{"dataframe_records": [{"tenure_months": Infinity, "monthly_charges": 50.5, "plan": "basic", "region": "north"}]}'
    ),
    "null in nullable numeric": _json({"dataframe_records": [{**ROW, "monthly_charges": None}]}),
    "null in nullable categorical": _json({"dataframe_records": [{**ROW, "region": None}]}),
    "null in non-nullable numeric": _json({"dataframe_records": [{**ROW, "tenure_months": None}]}),
    "null in non-nullable categorical": _json({"dataframe_records": [{**ROW, "plan": None}]}),
    "key left out of one record (inputs)": _json({"inputs": [ROW, _without(ROW2, "monthly_charges")]}),
    "key left out of one record (instances)": _json({"instances": [ROW, _without(ROW2, "monthly_charges")]}),
    "omitted nullable column": _json({"dataframe_records": [_without(ROW, "monthly_charges")]}),
    "omitted non-nullable column": _json({"dataframe_records": [_without(ROW, "tenure_months")]}),
    "unknown extra column": _json({"dataframe_records": [{**ROW, "customer_id": "c-17"}]}),
    "unknown extra top-level key": _json({"dataframe_records": [ROW], "client": "batch-7"}),
    "numeric string": _json({"dataframe_records": [{**ROW, "tenure_months": "12"}]}),
    "integer-coded category": _json({"dataframe_records": [{**ROW, "plan": 2}]}),
    "word in numeric column": _json({"dataframe_records": [{**ROW, "tenure_months": "twelve"}]}),
    "boolean in numeric column": _json({"dataframe_records": [{**ROW, "tenure_months": True}]}),
    "params not an object": _json({"dataframe_records": [ROW], "params": [1]}),
    "two input forms": _json({"dataframe_records": [ROW], "inputs": [ROW]}),
    "no input form ({})": _json({}),
    "empty dataframe_records": _json({"dataframe_records": []}),
    "empty body": _raw(""),
    "malformed JSON": _raw('{"dataframe_records": ['),
    "JSON list": _json([ROW]),
    "charset latin-1": (json.dumps({"dataframe_records": [ROW]}).encode(), "application/json; charset=latin-1"),
    "text/plain": (json.dumps({"dataframe_records": [ROW]}).encode(), "text/plain"),
}

# payload -> (MLflow's status, ours, why they differ by design)
EXPECTED_DIFFERENCES = {
    "text/csv, empty field in non-nullable column": (
        200,
        422,
        "tenure_months is not nullable in the dataset spec: MLflow passes NaN to the model, which imputes it",
    ),
    "bare NaN in non-nullable column": (
        200,
        422,
        "as above: NaN is a missing value, refused where the spec forbids one",
    ),
    "null in non-nullable numeric": (200, 422, "as above"),
    "null in non-nullable categorical": (
        200,
        422,
        "plan is not nullable in the spec: MLflow passes None, which the model encodes as no category",
    ),
    "bare Infinity": (200, 422, "an infinite feature value is no measurement; MLflow predicts on it"),
    "boolean in numeric column": (200, 422, "JSON true is not a number in the spec's contract; MLflow casts it to 1.0"),
    "params not an object": (
        200,
        400,
        "params are name: value; MLflow ignores a malformed params for a model without params",
    ),
    "Parquet, int64 column for a numeric feature": (
        400,
        200,
        "MLflow reads Parquet without casting to the signature, so its schema enforcement refuses int64 for a "
        "double; this server types every body with the one cast, as it types JSON integers",
    ),
    "text/csv, header only": (
        200,
        400,
        "a request without rows is refused in every form; MLflow answers [] for CSV only",
    ),
}


def _train_and_register(tmp_path_factory) -> tuple[str, str, str]:
    from include.data.spec import load_spec
    from include.registry import register_challenger
    from include.training.train import TrainingConfig, train_and_log

    home = tmp_path_factory.mktemp("protocol-home")
    spec_path = home / "spec.yaml"
    spec_path.write_text(textwrap.dedent(SPEC))
    spec = load_spec(spec_path, environ={})
    rng = np.random.default_rng(0)
    rows = 300
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows).astype(float),
            "monthly_charges": rng.uniform(20, 120, rows),
            "plan": rng.choice(["basic", "premium"], rows),
            "region": rng.choice(["north", "south"], rows).astype(object),
        }
    )
    frame.loc[rng.random(rows) < 0.1, "monthly_charges"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "region"] = None
    score = -0.05 * frame["tenure_months"] + 0.02 * frame["monthly_charges"].fillna(70) + (frame["plan"] == "basic")
    frame["churned"] = (score + rng.normal(0, 0.5, rows) > score.median()).astype(int)
    frame.insert(0, "row_id", [f"row-{index:04d}" for index in range(rows)])
    frame.insert(
        1, "event_time", pd.Timestamp("2024-03-01T00:00:00Z") + pd.to_timedelta(np.arange(rows) * 60, unit="s")
    )
    with private_registry(home) as settings:
        config = TrainingConfig(model_type="sklearn_hgb", epochs=2, learning_rate=0.1, batch_size=64, seed=3)
        result = train_and_log(frame, spec, config, settings)
        version = register_challenger(MODEL_NAME, result.model_uri, result.run_id, {})
    return settings.tracking_uri, version, str(home)


def _start(command: list[str], log: Path, url: str, env: dict[str, str]) -> ManagedProcess:
    process = ManagedProcess.start(command, log_path=log, env=env, cwd=ROOT)

    def up() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        process.wait_healthy(up, START_TIMEOUT_S, 1.0, " ".join(command[:4]))
    except BaseException:
        process.stop_group()
        raise
    return process


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """``mlflow models serve`` and this project's server on one registered version: their base URLs."""
    tracking_uri, version, home = _train_and_register(tmp_path_factory)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_HOME": home,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
        # mlflow models serve runs uvicorn from PATH: this interpreter's environment comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    logs = tmp_path_factory.mktemp("protocol-logs")
    mlflow_port, our_port = free_port(), free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    started = []
    try:
        started.append(
            _start(
                [mlflow_cli, "models", "serve", "-m", f"models:/{MODEL_NAME}/{version}", "--env-manager", "local"]
                + ["-h", "127.0.0.1", "-p", str(mlflow_port), "--workers", "1"],
                logs / "mlflow.log",
                f"http://127.0.0.1:{mlflow_port}/ping",
                env,
            )
        )
        started.append(
            _start(
                [sys.executable, "-m", "include.serving", "--model-name", MODEL_NAME, "--version", version]
                + ["--host", "127.0.0.1", "--port", str(our_port), "--no-inference-log"],
                logs / "ours.log",
                f"http://127.0.0.1:{our_port}/health",
                env,
            )
        )
        yield f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{our_port}"
    finally:
        for process in started:
            process.stop_group()


def _post(base: str, body: bytes, content_type: str) -> tuple[int, object]:
    response = requests.post(f"{base}/invocations", data=body, headers={"Content-Type": content_type}, timeout=60)
    try:
        content = response.json()
    except ValueError:
        content = response.text
    return response.status_code, content


def _shown(status: int, content) -> str:
    if status == 200 and isinstance(content, dict):
        predictions = content.get("predictions", [])
        shown = "; ".join(f"{item['probability']:.6f}/{item['prediction']}" for item in predictions) or "[]"
        return f"200 {shown}"
    if isinstance(content, dict):
        text = content.get("error_code", "") + " " + str(content.get("message", ""))
    else:
        text = str(content)
    return f"{status} {' '.join(text.split())[:90]}".replace("|", "\\|")


def _same_predictions(theirs: list[dict], ours: list[dict]) -> bool:
    if len(theirs) != len(ours):
        return False
    for their, our in zip(theirs, ours, strict=True):
        if their["prediction"] != our["prediction"] or abs(their["probability"] - our["probability"]) > 1e-9:
            return False
    return True


def test_the_server_answers_mlflows_scoring_protocol_as_mlflow_models_serve_does(servers, tmp_path):
    mlflow_url, our_url = servers
    lines = [
        "| payload | `mlflow models serve` | this server | verdict |",
        "| --- | --- | --- | --- |",
    ]
    failures = []
    for name, (body, content_type) in PAYLOADS.items():
        their_status, theirs = _post(mlflow_url, body, content_type)
        our_status, ours = _post(our_url, body, content_type)
        expected = EXPECTED_DIFFERENCES.get(name)
        if their_status == our_status == 200:
            same = _same_predictions(theirs["predictions"], ours["predictions"])
            verdict = "same predictions" if same else "DIFFERENT PREDICTIONS"
            ok = same and expected is None
        elif 400 <= their_status < 500 and 400 <= our_status < 500:
            verdict, ok = "4xx on both", expected is None
        elif expected is not None and (their_status, our_status) == expected[:2]:
            verdict, ok = f"expected difference: {expected[2]}", True
        else:
            verdict, ok = "UNEXPECTED DIFFERENCE", False
        if expected is not None and not ok and verdict != "UNEXPECTED DIFFERENCE":
            verdict += f" (an expected difference {expected[:2]} no longer occurs)"
        if not ok:
            failures.append(name)
        lines.append(f"| {name} | {_shown(their_status, theirs)} | {_shown(our_status, ours)} | {verdict} |")
        # our server keeps answering after every payload
        assert requests.get(f"{our_url}/health", timeout=5).status_code == 200
    table = "\n".join(lines) + "\n"
    (tmp_path / "scoring_protocol.md").write_text(table)
    print(f"\nconformance table ({tmp_path / 'scoring_protocol.md'}):\n{table}")
    assert not failures, f"payloads that do not conform: {failures}\n{table}"
