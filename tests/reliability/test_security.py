"""Case 13: exposure and secrets.

Faults and expected outcomes:

- the local api-server, the MLflow server and the model server are started the project's
  way: each listens on 127.0.0.1 and nowhere else;
- the model server gets oversized bodies (declared and streamed), malformed JSON and
  malformed payloads: each gets a 4xx, and the same server process answers afterwards;
- canary secrets sit where a deployment keeps them (the ``mlflow_default`` connection's
  password, ``MLFLOW_TRACKING_TOKEN``, the object-store key) while the suite runs the
  pipeline: none of them appears in the task logs, the model server's and MLflow's logs,
  any XCom, any MLflow param or tag (runs and model versions), nor in the rendered
  training pod and serving manifests of the kubernetes profile.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import psutil
import pytest
import requests

from tests.reliability.conftest import CANARIES, ROOT, free_port

pytestmark = pytest.mark.reliability


def _listening(pid: int) -> set[tuple[str, int]]:
    root = psutil.Process(pid)
    addresses = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    addresses.add((connection.laddr.ip, connection.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return addresses


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.fixture
def api_server(stack):
    """The Airflow api-server, started with the local stack's own command line and environment."""
    from scripts.local_stack import LocalStack, stop_process_group

    local = LocalStack(
        home=stack.home / "api-server",
        api_port=free_port(),
        # the suite's migrated metadata DB
        extra_env={"AIRFLOW_HOME": os.environ["AIRFLOW_HOME"]},
    )
    # the api-server writes to it for as long as it runs; closed in the finally below
    log = open(stack.home / "run" / "api-server.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        local.command("api-server"),
        env=local.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"the api-server exited with {process.returncode}"
            try:
                if _session().get(f"{local.api_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the api-server did not answer"
            time.sleep(0.5)
        yield process
    finally:
        stop_process_group(process.pid, 30)
        log.close()


def test_local_servers_listen_on_loopback_only(stack, champion_run, api_server):
    from include.deployment.local import LocalServingDeployer

    serving = LocalServingDeployer(stack.settings).status()
    assert serving is not None and serving.running
    for name, pid in (("api-server", api_server.pid), ("MLflow", stack.mlflow.pid), ("model server", serving.pid)):
        addresses = _listening(pid)
        assert addresses, f"the {name} listens nowhere"
        assert {ip for ip, _ in addresses} == {"127.0.0.1"}, f"the {name} listens on {addresses}"


def test_the_model_server_refuses_bad_payloads_and_stays_up(stack, champion_run):
    from include.deployment.local import LocalServingDeployer
    from include.serving.app import DEFAULT_MAX_BODY_BYTES

    before = LocalServingDeployer(stack.settings).status()
    url, session = before.url, _session()
    oversized = b'{"dataframe_records": [' + b'{"tenure_months": 1.0},' * (DEFAULT_MAX_BODY_BYTES // 20) + b"{}]}"
    headers = {"Content-Type": "application/json"}

    def streamed():  # no Content-Length: the server must count what arrives
        for start in range(0, len(oversized), 1 << 20):
            yield oversized[start : start + (1 << 20)]

    answers = {
        "declared oversized body": session.post(f"{url}/invocations", data=oversized, headers=headers, timeout=60),
        "streamed oversized body": session.post(f"{url}/invocations", data=streamed(), headers=headers, timeout=60),
        "malformed JSON": session.post(
            f"{url}/invocations", data=b'{"dataframe_split": [1,', headers=headers, timeout=30
        ),
        "NaN constant": session.post(
            f"{url}/invocations", data=b'{"dataframe_records": [{"tenure_months": NaN}]}', headers=headers, timeout=30
        ),
        "JSON array": session.post(f"{url}/invocations", json=[1, 2, 3], timeout=30),
        "unknown input format": session.post(f"{url}/invocations", json={"instances": [[1, 2]]}, timeout=30),
        "wrong value type": session.post(
            f"{url}/invocations",
            json={"dataframe_records": [{name: "not a number" for name in stack.spec.feature_names}]},
            timeout=30,
        ),
    }
    statuses = {case: answer.status_code for case, answer in answers.items()}
    assert statuses["declared oversized body"] == 413 and statuses["streamed oversized body"] == 413, statuses
    assert all(400 <= status < 500 for status in statuses.values()), statuses

    after = LocalServingDeployer(stack.settings).status()
    assert after is not None and after.running and after.pid == before.pid, "the model server did not stay up"
    assert session.get(f"{url}/health", timeout=10).status_code == 200


def _mlflow_texts(stack) -> list[str]:
    client = stack.client()
    texts = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            texts.append(json.dumps({"params": run.data.params, "tags": run.data.tags}))
    for version in client.search_model_versions(f"name='{stack.settings.model_name}'"):
        texts.append(json.dumps(dict(version.tags)))
    return texts


def _xcom_texts() -> list[str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [json.dumps(row.value, default=str) for row in session.query(XComModel).all()]


def _rendered_kubernetes_specs(tmp_path) -> list[str]:
    """The training pod and the serving manifests of the kubernetes profile, rendered for a run."""
    from include.deployment.serving_config import ServingConfig
    from include.settings import Settings
    from tests.unit.manifests import render_all
    from tests.unit.plugins import test_training_pod as pods
    from tests.unit.plugins.pods import KUBECONFIG

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_KUBERNETES_DEFAULT",
            json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
        )
        for name, value in pods.VARIABLES.items():
            patch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
        dag = pods._parse_ml_training("kubernetes")
        _, pod = pods.build_pod(dag, gpus=1)
        # a pod keeps no local folder: the kubernetes profile logs inferences to an object store
        environ = {**os.environ, "MLOPS_PROFILE": "kubernetes", "MLOPS_INFERENCE_LOG": "s3://churn/inference-log"}
        settings = Settings.from_env(environ)
        manifests = render_all(settings.model_name, "1", ServingConfig.from_settings(settings))
    return [json.dumps(pod), json.dumps(manifests, default=str)]


def test_no_secret_in_logs_xcoms_mlflow_or_pod_specs(stack, champion_run, tmp_path):
    from include.deployment.local import LocalServingDeployer

    logs = {
        "task logs of the DAG runs": stack.logs,
        "model server log": LocalServingDeployer(stack.settings).log_path,
        "MLflow server log": stack.mlflow.log_path,
    }
    sources = {name: path.read_text(errors="replace") for name, path in logs.items() if path.exists()}
    assert sources["model server log"] and sources["MLflow server log"]
    sources["XComs"] = "\n".join(_xcom_texts())
    sources["MLflow params and tags"] = "\n".join(_mlflow_texts(stack))
    sources["rendered kubernetes specs"] = "\n".join(_rendered_kubernetes_specs(tmp_path))
    assert "run_id" in sources["XComs"] and "data.md5" in sources["MLflow params and tags"], "nothing was scanned"

    leaks = [
        f"{secret} in {source}"
        for source, text in sources.items()
        for secret, value in CANARIES.items()
        if value in text
    ]
    assert leaks == []
