"""What the pod tests share: a DAG parsed in a profile, a run's template context, a manifest's parts.

A DAG is parsed with ``MLOPS_PROFILE=kubernetes`` and the production settings in the
environment (Variables and connections as ``AIRFLOW_VAR_*`` / ``AIRFLOW_CONN_*``); a task is
rendered with a run's context and asked for the pod it would create. The kubeconfig points at
a cluster that does not exist: building a pod never calls the API server.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_VERSIONS = ("1.35", "1.36", "1.37")
TRACKING_URI = "https://mlflow.ml-platform.svc.cluster.local"
# stored as the mlflow_default connection's password: it may never show up in a pod
CONNECTION_PASSWORD = "conn-password-that-must-not-leak"
CREDENTIAL_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: nobody
  user: {token: not-a-real-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""


def parse_dag(dag_file: Path, dag_id: str, profile: str):
    """``dag_id`` of ``dag_file`` as the dag-processor parses it with ``MLOPS_PROFILE=profile``."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PROFILE", profile)
        bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@contextlib.contextmanager
def kubernetes_environment(folder: Path, variables: dict[str, str]):
    """The production connections (a cluster that does not exist, MLflow with a password) and
    ``variables`` in the environment, for as long as the context lasts; yields the MonkeyPatch."""
    kubeconfig = folder / "config"
    kubeconfig.write_text(KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_KUBERNETES_DEFAULT",
            json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
        )
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT",
            json.dumps(
                {
                    "conn_type": "generic",
                    "login": "airflow",
                    "password": CONNECTION_PASSWORD,
                    "extra": {"tracking_uri": TRACKING_URI},
                }
            ),
        )
        for name, value in variables.items():
            patch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
        yield patch


def run_context(dag, task, ti, *, run_id: str, extra: dict | None = None, **params) -> dict:
    """The template context of one run, with the keys the Task SDK's task runner provides
    (and ``extra`` ones, e.g. the data interval)."""
    from airflow.sdk.execution_time.context import ConnectionAccessor, VariableAccessor

    run_params = copy.deepcopy(dag.params)
    for name, value in params.items():
        run_params[name] = value
    return {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "run_id": run_id,
        "params": run_params.validate(),  # as on a trigger: the form's schema is enforced
        "var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
        "conn": ConnectionAccessor(),
        **(extra or {}),
    }


def pod_manifest(task, context) -> dict:
    """The pod ``task`` (rendered for ``context``) would create, with API field names."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context))


def containers(pod: dict) -> dict[str, dict]:
    return {container["name"]: container for container in pod["spec"]["containers"]}


def env_entries(node):
    """Every env var, anywhere in the manifest (init containers and sidecars included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env":
                yield from value
            else:
                yield from env_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from env_entries(item)


def assert_restricted(pod: dict, uid: int) -> None:
    """The pod meets the "restricted" Pod Security Standard, running as ``uid``, with no API token."""
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for container in spec["containers"]:  # the xcom sidecar included
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context.get("runAsNonRoot", True) is True and not context.get("privileged")


def assert_credentials_only_from_secrets(pod: dict) -> None:
    """No credential in the manifest but as a Secret reference; the MLflow Secret is mounted."""
    entries = list(env_entries(pod))
    assert entries, "the scan found no env at all"
    for env in entries:
        if CREDENTIAL_NAME.search(env["name"]):
            assert "value" not in env and "secretKeyRef" in env["valueFrom"], env
        if "value" in env:
            assert not re.match(r"^\w+://[^/@]*:[^/@]*@", env["value"]), f"{env['name']} embeds a password"
    assert {"secretRef": {"name": "mlflow-credentials"}} in containers(pod)["base"]["envFrom"]
    assert CONNECTION_PASSWORD not in json.dumps(pod)


def parse_imports_kubernetes(dag_file: Path) -> list[str]:
    """The Kubernetes modules a fresh interpreter holds after parsing ``dag_file`` in the local profile."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps(sorted(m for m in ('kubernetes', 'airflow.providers.cncf.kubernetes.operators.pod')"
        " if m in sys.modules)))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "MLOPS_PROFILE"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
