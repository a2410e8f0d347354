"""The drift check's pod of the kubernetes profile, proven without a cluster.

``drift_monitor`` is parsed with ``MLOPS_PROFILE=kubernetes``, its ``check_drift`` task
rendered for a scheduled run and for a manual run without a logical date, and asked for
the pod it would create; that pod is validated against the official schemas of three
Kubernetes versions and checked field by field (:mod:`tests.unit.plugins.pods`).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pendulum
import pytest

from include.monitoring.nightly import EXIT_BROKEN_WINDOW, EXIT_INSUFFICIENT_DATA
from tests.unit.plugins.pods import (
    KUBERNETES_VERSIONS,
    ROOT,
    TRACKING_URI,
    assert_credentials_only_from_secrets,
    assert_restricted,
    containers,
    kubernetes_environment,
    parse_dag,
    parse_imports_kubernetes,
    pod_manifest,
    run_context,
)

DAG_FILE = ROOT / "dags" / "drift_monitor.py"
VARIABLES = {
    "training_namespace": "ml-training-prod",
    "monitoring_image": "registry.example.com/ml/churn-airflow:2026.03.1",
    "drift_cpu": "3",
    "drift_memory": "12Gi",
}
# where the worker's settings say the check's inputs and outputs are
WORKER_SETTINGS = {
    "MLOPS_PROFILE": "kubernetes",
    "MLOPS_INFERENCE_LOG": "s3://ml-prod/inference-log",
    "MLOPS_REPORTS": "s3://ml-prod/reports",
    "MLOPS_DVC_REMOTE": "s3://ml-prod/dvc",
    "MLOPS_DATA_REGISTRY_REMOTE": "https://git.example.com/ml/data-registry.git",
    "MLOPS_MODEL_NAME": "customer_churn",
}
SCHEDULED_RUN = {
    "run_id": "scheduled__2026-03-02T00:00:00+00:00",
    "data_interval_start": pendulum.datetime(2026, 3, 1, tz="UTC"),
    "data_interval_end": pendulum.datetime(2026, 3, 2, tz="UTC"),
    "run_after": pendulum.datetime(2026, 3, 2, tz="UTC"),
}
# Airflow 3 gives a run triggered without a logical date no data interval
MANUAL_RUN = {
    "run_id": "manual__2026-03-05T08:30:00+00:00",
    "data_interval_start": None,
    "data_interval_end": None,
    "run_after": pendulum.datetime(2026, 3, 5, 8, 30, tz="UTC"),
}


class FakeTaskInstance:
    """What the operator's pod labels read from ``ti``."""

    dag_id = "drift_monitor"
    task_id = "check_drift"
    map_index = -1
    try_number = 1

    def __init__(self, run_id: str):
        self.run_id = run_id

    def xcom_pull(self, *args, **kwargs):
        raise AssertionError("check_drift reads no XCom")


@pytest.fixture(scope="module")
def kubernetes_dag(tmp_path_factory):
    with kubernetes_environment(tmp_path_factory.mktemp("kube"), VARIABLES) as patch:
        for name, value in WORKER_SETTINGS.items():
            patch.setenv(name, value)
        patch.delenv("MLOPS_DATASET_SPEC", raising=False)
        patch.delenv("MLOPS_ARTIFACT_ROOT", raising=False)
        yield parse_dag(DAG_FILE, "drift_monitor", "kubernetes")


@pytest.fixture(scope="module")
def local_dag():
    return parse_dag(DAG_FILE, "drift_monitor", "local")


def render(dag, run: dict, **params):
    """check_drift as a worker runs it for ``run``: its own copy, templates rendered."""
    task = copy.deepcopy(dag.get_task("check_drift"))
    extra = {
        "data_interval_start": run["data_interval_start"],
        "data_interval_end": run["data_interval_end"],
        "dag_run": SimpleNamespace(run_id=run["run_id"], run_after=run["run_after"]),
    }
    context = run_context(dag, task, FakeTaskInstance(run["run_id"]), run_id=run["run_id"], extra=extra, **params)
    task.render_template_fields(context)
    return task, context


def build_pod(dag, run: dict = SCHEDULED_RUN, **params) -> tuple[object, dict]:
    task, context = render(dag, run, **params)
    return task, pod_manifest(task, context)


@pytest.fixture(scope="module")
def scheduled_pod(kubernetes_dag):
    return build_pod(kubernetes_dag, SCHEDULED_RUN)


@pytest.fixture(scope="module")
def manual_pod(kubernetes_dag):
    return build_pod(kubernetes_dag, MANUAL_RUN, window_days=7, estimated_drop_threshold=0.04)


def _args(pod: dict) -> dict[str, str]:
    args = containers(pod)["base"]["args"]
    return dict(zip(args[::2], args[1::2], strict=True))


# -- the manifest is valid Kubernetes -----------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("run", ["scheduled", "manual without a logical date"])
def test_pod_is_valid_for_the_kubernetes_api(version, run, scheduled_pod, manual_pod):
    import kubernetes_validate

    pod = {"scheduled": scheduled_pod, "manual without a logical date": manual_pod}[run][1]
    kubernetes_validate.validate(pod, version, strict=True)


def test_checked_in_variables_give_a_valid_pod(kubernetes_dag, monkeypatch):
    """Every Variable the drift pod's templates need is in airflow_settings.yaml, with a usable value."""
    import kubernetes_validate

    from scripts.airflow_settings import load_settings_file

    settings = load_settings_file(ROOT / "airflow_settings.yaml", {"MLOPS_HOME": "/srv/mlops"})
    for name in VARIABLES:
        monkeypatch.delenv(f"AIRFLOW_VAR_{name.upper()}", raising=False)
    for name, value in settings.variables.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
    pod = build_pod(kubernetes_dag)[1]
    kubernetes_validate.validate(pod, KUBERNETES_VERSIONS[-1], strict=True)
    base = containers(pod)["base"]
    assert base["image"] == settings.variables["monitoring_image"]
    assert base["resources"]["limits"] == {
        "cpu": settings.variables["drift_cpu"],
        "memory": settings.variables["drift_memory"],
    }


# -- what the pod asks for and runs -------------------------------------------------------------


def test_cpu_and_memory_come_from_their_variables_and_no_gpu(scheduled_pod):
    pod = scheduled_pod[1]
    resources = containers(pod)["base"]["resources"]
    assert resources == {"limits": {"cpu": "3", "memory": "12Gi"}, "requests": {"cpu": "3", "memory": "12Gi"}}
    spec = pod["spec"]
    assert not spec.get("tolerations") and not spec.get("nodeSelector") and not spec.get("affinity")


def test_cpu_and_memory_default_when_their_variables_are_unset(kubernetes_dag, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_DRIFT_CPU")
    monkeypatch.delenv("AIRFLOW_VAR_DRIFT_MEMORY")
    resources = containers(build_pod(kubernetes_dag)[1])["base"]["resources"]
    assert resources == {"limits": {"cpu": "2", "memory": "8Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}}


def test_a_malformed_size_is_named_before_any_pod_is_created(kubernetes_dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DRIFT_MEMORY", "8 GB")
    with pytest.raises(ValueError, match=re.escape("drift_memory='8 GB' is not a Kubernetes quantity")):
        build_pod(kubernetes_dag)


def test_image_and_namespace_come_from_variables(scheduled_pod):
    pod = scheduled_pod[1]
    base = containers(pod)["base"]
    assert base["image"] == VARIABLES["monitoring_image"]
    assert base["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["namespace"] == VARIABLES["training_namespace"]


def test_a_scheduled_run_checks_its_data_interval(scheduled_pod):
    base = containers(scheduled_pod[1])["base"]
    assert base["command"] == ["python", "-m", "include.monitoring.nightly"]
    assert base["args"] == [
        "--window-start",
        "2026-03-01T00:00:00+00:00",
        "--window-end",
        "2026-03-02T00:00:00+00:00",
        "--run-after",
        "2026-03-02T00:00:00+00:00",
        "--window-days",
        "1",
        "--min-rows",
        "200",
        "--drift-share-threshold",
        "0.3",
        "--performance-drop-threshold",
        "0.05",
        "--estimated-drop-threshold",
        "",
        "--xcom-path",
        "/airflow/xcom/return.json",
    ]


def test_a_manual_run_without_a_logical_date_checks_the_last_complete_day(manual_pod):
    from include.monitoring.nightly import build_parser
    from include.monitoring.window import checked_interval

    args = _args(manual_pod[1])
    assert (args["--window-start"], args["--window-end"]) == ("", "")
    assert args["--run-after"] == "2026-03-05T08:30:00+00:00"
    assert (args["--window-days"], args["--estimated-drop-threshold"]) == ("7", "0.04")
    parsed = build_parser().parse_args(containers(manual_pod[1])["base"]["args"])
    assert checked_interval(parsed.window_start, parsed.window_end, parsed.run_after) == (
        datetime(2026, 3, 4, tzinfo=UTC),
        datetime(2026, 3, 5, tzinfo=UTC),
    )
    assert parsed.estimated_drop_threshold == 0.04 and parsed.window_days == 7


def test_arguments_are_what_the_command_line_accepts(scheduled_pod):
    from include.monitoring.nightly import build_parser

    parsed = build_parser().parse_args(containers(scheduled_pod[1])["base"]["args"])
    assert (parsed.window_start, parsed.window_end) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    )
    assert parsed.min_rows == 200 and parsed.drift_share_threshold == 0.3
    assert parsed.estimated_drop_threshold is None
    assert parsed.xcom_path == "/airflow/xcom/return.json"


def test_the_pod_gets_the_worker_s_locations_and_the_tracking_uri(scheduled_pod):
    env = {entry["name"]: entry.get("value") for entry in containers(scheduled_pod[1])["base"]["env"]}
    for name, value in WORKER_SETTINGS.items():
        assert env[name] == value, name
    assert env["MLFLOW_TRACKING_URI"] == TRACKING_URI
    # the spec inside the project is named relative to it: it resolves in the image's copy
    assert env["MLOPS_DATASET_SPEC"] == "include/datasets/customer_churn.yaml"
    assert "MLOPS_ARTIFACT_ROOT" not in env, "unset in the kubernetes profile: the tracking server's default"


def test_result_comes_back_through_the_xcom_sidecar_and_insufficient_data_skips(scheduled_pod):
    task, pod = scheduled_pod
    assert task.do_xcom_push is True
    assert task.skip_on_exit_code == [EXIT_INSUFFICIENT_DATA]
    sidecar = containers(pod)["airflow-xcom-sidecar"]
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in sidecar["volumeMounts"]


def _finished_pod(exit_code: int):
    from kubernetes.client import models as k8s

    terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code)
    status = k8s.V1ContainerStatus(
        name="base",
        state=k8s.V1ContainerState(terminated=terminated),
        image="image",
        image_id="",
        ready=False,
        restart_count=0,
    )
    return k8s.V1Pod(status=k8s.V1PodStatus(phase="Failed", container_statuses=[status]))


@pytest.mark.parametrize("exit_code, fails_for_good", [(EXIT_BROKEN_WINDOW, True), (1, False)])
def test_a_broken_window_fails_the_task_without_a_retry(scheduled_pod, monkeypatch, exit_code, fails_for_good):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    def provider_cleanup(self, pod, remote_pod, xcom_result=None, context=None):
        raise AirflowException("Pod check-drift returned a failure.")

    monkeypatch.setattr(KubernetesPodOperator, "cleanup", provider_cleanup)
    task = scheduled_pod[0]
    with pytest.raises(AirflowException) as raised:
        task.cleanup(None, _finished_pod(exit_code))
    assert isinstance(raised.value, AirflowFailException) is fails_for_good


def test_pod_stops_itself_before_the_task_times_out(scheduled_pod):
    task, pod = scheduled_pod
    timeout = task.execution_timeout.total_seconds()
    assert timeout - 300 <= pod["spec"]["activeDeadlineSeconds"] < timeout
    assert pod["spec"]["restartPolicy"] == "Never"
    assert task.on_finish_action.value == "delete_pod"
    assert task.kubernetes_conn_id == "kubernetes_default"


# -- security -----------------------------------------------------------------------------------


def test_pod_meets_the_restricted_pod_security_standard(scheduled_pod):
    from mlops_airflow.drift_check_pod import MONITORING_UID

    dockerfile = (ROOT / "docker" / "airflow.Dockerfile").read_text()
    # the base image's airflow user; nothing in the Dockerfile switches to another
    assert re.search(r"^FROM apache/airflow:", dockerfile, re.MULTILINE)
    assert not re.search(r"^USER ", dockerfile, re.MULTILINE)
    assert_restricted(scheduled_pod[1], MONITORING_UID)


def test_credentials_reach_the_pod_only_from_kubernetes_secrets(scheduled_pod, manual_pod):
    for _, pod in (scheduled_pod, manual_pod):
        assert_credentials_only_from_secrets(pod)
    env = {entry["name"]: entry for entry in containers(scheduled_pod[1])["base"]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "object-store-credentials"


def test_a_location_with_a_password_is_refused(kubernetes_dag, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_REGISTRY_REMOTE", "https://bot:hunter2@git.example.com/ml/data-registry.git")
    with pytest.raises(ValueError, match="MLOPS_DATA_REGISTRY_REMOTE .* embeds a password"):
        build_pod(kubernetes_dag)


# -- one graph, two profiles --------------------------------------------------------------------


def test_kubernetes_profile_dag_serializes_for_the_scheduler(kubernetes_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    check = DagSerialization.from_dict(DagSerialization.to_dict(kubernetes_dag)).get_task("check_drift")
    assert check.task_type == "DriftCheckPodOperator"


def test_both_profiles_have_the_same_graph(local_dag, kubernetes_dag):
    from mlops_airflow.drift_check import LocalDriftCheckOperator

    def graph(dag):
        return {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}

    assert (
        graph(local_dag) == graph(kubernetes_dag) == {"check_drift": ["trigger_retraining"], "trigger_retraining": []}
    )
    assert type(local_dag.get_task("check_drift")) is LocalDriftCheckOperator
    local, pod = local_dag.get_task("check_drift"), kubernetes_dag.get_task("check_drift")
    assert (local.execution_timeout, local.retries) == (pod.execution_timeout, pod.retries)


def test_local_profile_parse_imports_no_kubernetes_code():
    assert parse_imports_kubernetes(DAG_FILE) == []
