"""The GPU training pod of the kubernetes profile, proven without a cluster.

The ``ml_training`` DAG is parsed with ``MLOPS_PROFILE=kubernetes``, its ``train``
task rendered with a run's context (params, Variables and connections from
``AIRFLOW_VAR_*`` / ``AIRFLOW_CONN_*``, the snapshot's XCom) and asked for the pod
it would create; that pod is validated against the official schemas of three
Kubernetes versions and checked field by field. The kubeconfig points at a
cluster that does not exist: building the pod never calls the API server.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import timedelta

import pytest

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

DAG_FILE = ROOT / "dags" / "ml_training.py"
DATA_REF = {
    "repo": "/srv/data-registry",
    "path": "snapshots/customer_churn/2026-02-01.parquet",
    "md5": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "rev": "3b9c1f2",
    "rows": 41234,
    "window_start": "2026-01-05",
    "window_end": "2026-02-01",
}
RUN_ID = "manual__2026-02-02T08:00:00+00:00"
VARIABLES = {
    "training_namespace": "ml-training-prod",
    "training_image": "registry.example.com/ml/churn-training:2026.02.1",
    "gpu_node_selector": json.dumps(
        {"nvidia.com/gpu.present": "true", "node.kubernetes.io/instance-type": "g5.2xlarge"}
    ),
    "training_cpu": "6",
    "training_memory": "24Gi",
}
NODE_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A10G", "NVIDIA-L4"]}
                ]
            }
        ]
    }
}


def _parse_ml_training(profile: str):
    return parse_dag(DAG_FILE, "ml_training", profile)


@pytest.fixture(scope="module")
def kubernetes_dag(tmp_path_factory):
    """ml_training parsed in the kubernetes profile, with the production settings in the environment."""
    with kubernetes_environment(tmp_path_factory.mktemp("kube"), VARIABLES) as patch:
        patch.delenv("AIRFLOW_VAR_GPU_NODE_AFFINITY", raising=False)
        yield _parse_ml_training("kubernetes")


@pytest.fixture(scope="module")
def local_dag():
    return _parse_ml_training("local")


class FakeTaskInstance:
    """What the train task's templates and the operator's pod labels read from ``ti``."""

    dag_id = "ml_training"
    task_id = "train"
    run_id = RUN_ID
    map_index = -1
    try_number = 1

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        assert (task_ids, key) == ("snapshot", "return_value"), "train reads only the snapshot's data ref"
        return DATA_REF


def render(dag, **params):
    """The train task as a worker runs it: its own copy, templates rendered for this run."""
    task = copy.deepcopy(dag.get_task("train"))
    context = run_context(dag, task, FakeTaskInstance(), run_id=RUN_ID, **params)
    task.render_template_fields(context)
    return task, context


def build_pod(dag, **params) -> tuple[object, dict]:
    """The operator and the pod manifest (API field names, as sent to the API server) of one run."""
    task, context = render(dag, **params)
    return task, pod_manifest(task, context)


@pytest.fixture(scope="module")
def gpu_pod(kubernetes_dag):
    return build_pod(kubernetes_dag, gpus=2)


@pytest.fixture
def affinity_pod(kubernetes_dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_GPU_NODE_AFFINITY", json.dumps(NODE_AFFINITY))
    return build_pod(kubernetes_dag, gpus=1)[1]


@pytest.fixture
def cpu_pod(kubernetes_dag):
    return build_pod(kubernetes_dag, gpus=0)[1]


# -- the manifest is valid Kubernetes -----------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", ["gpus=2", "gpus=1 with node affinity", "gpus=0"])
def test_pod_is_valid_for_the_kubernetes_api(version, variant, gpu_pod, affinity_pod, cpu_pod):
    import kubernetes_validate

    pod = {"gpus=2": gpu_pod[1], "gpus=1 with node affinity": affinity_pod, "gpus=0": cpu_pod}[variant]
    # strict: an unknown or misspelt field fails too, not only a wrong type
    kubernetes_validate.validate(pod, version, strict=True)


def test_checked_in_variables_give_a_valid_pod(kubernetes_dag, monkeypatch):
    """Every Variable the pod templates need is in airflow_settings.yaml, with a usable value."""
    import kubernetes_validate

    from scripts.airflow_settings import load_settings_file

    settings = load_settings_file(ROOT / "airflow_settings.yaml", {"MLOPS_HOME": "/srv/mlops"})
    for name in (*VARIABLES, "gpu_node_affinity"):
        monkeypatch.delenv(f"AIRFLOW_VAR_{name.upper()}", raising=False)
    for name, value in settings.variables.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
    pod = build_pod(kubernetes_dag, gpus=1)[1]
    kubernetes_validate.validate(pod, KUBERNETES_VERSIONS[-1], strict=True)
    assert containers(pod)["base"]["resources"]["limits"] == {
        "cpu": settings.variables["training_cpu"],
        "memory": settings.variables["training_memory"],
        "nvidia.com/gpu": "1",
    }
    assert pod["spec"]["nodeSelector"] == json.loads(settings.variables["gpu_node_selector"])


def test_validator_ships_the_versions_tested_and_catches_a_misspelt_field(gpu_pod):
    import kubernetes_validate

    shipped = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    assert set(KUBERNETES_VERSIONS) <= shipped
    broken = copy.deepcopy(gpu_pod[1])
    broken["spec"]["containers"][0]["resource"] = broken["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# -- what the pod asks for ----------------------------------------------------------------------


def test_gpus_param_sets_the_gpu_limit_and_variables_set_cpu_and_memory(gpu_pod):
    resources = containers(gpu_pod[1])["base"]["resources"]
    assert resources["limits"] == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "2"}
    # requests equal limits: extended resources may not be overcommitted, cpu/memory are not
    assert resources["requests"] == {"cpu": "6", "memory": "24Gi"}


def test_cpu_and_memory_default_when_their_variables_are_unset(kubernetes_dag, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_TRAINING_CPU")
    monkeypatch.delenv("AIRFLOW_VAR_TRAINING_MEMORY")
    resources = containers(build_pod(kubernetes_dag, gpus=1)[1])["base"]["resources"]
    assert resources["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert resources["requests"] == {"cpu": "4", "memory": "16Gi"}


def test_gpu_pod_tolerates_gpu_taints_and_lands_on_the_configured_nodes(gpu_pod):
    spec = gpu_pod[1]["spec"]
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["nodeSelector"] == json.loads(VARIABLES["gpu_node_selector"])
    assert not spec.get("affinity"), "no node affinity unless the Variable gpu_node_affinity is set"


def test_node_affinity_comes_from_its_variable_when_set(affinity_pod):
    assert affinity_pod["spec"]["affinity"] == {"nodeAffinity": NODE_AFFINITY}


def test_zero_gpus_asks_for_no_gpu_and_no_gpu_node(cpu_pod):
    resources = containers(cpu_pod)["base"]["resources"]
    assert "nvidia.com/gpu" not in resources["limits"] and "nvidia.com/gpu" not in resources.get("requests", {})
    spec = cpu_pod["spec"]
    assert not spec.get("tolerations") and not spec.get("nodeSelector") and not spec.get("affinity")


def test_image_namespace_and_pull_policy_come_from_variables(gpu_pod):
    pod = gpu_pod[1]
    base = containers(pod)["base"]
    assert base["image"] == VARIABLES["training_image"]
    assert base["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["namespace"] == VARIABLES["training_namespace"]


def test_pod_runs_the_training_command_line_with_the_run_s_arguments(gpu_pod):
    base = containers(gpu_pod[1])["base"]
    assert base["command"] == ["python", "-m", "include.training.train"]
    args = base["args"]
    assert json.loads(args[args.index("--data-ref") + 1]) == DATA_REF
    assert args[args.index("--data-ref") + 2 :] == [
        "--model-type",
        "torch_mlp",
        "--epochs",
        "10",
        "--learning-rate",
        "auto",
        "--batch-size",
        "256",
        "--tag",
        "airflow.dag_id=ml_training",
        "--tag",
        f"airflow.run_id={RUN_ID}",
        "--tag",
        "reason=manual",
        "--xcom-path",
        "/airflow/xcom/return.json",
    ]


def test_arguments_are_what_the_training_command_line_accepts(gpu_pod):
    from include.training.train import build_parser

    args = build_parser().parse_args(containers(gpu_pod[1])["base"]["args"])
    assert args.data_ref == DATA_REF and args.xcom_path == "/airflow/xcom/return.json"
    assert dict(args.tags) == {"airflow.dag_id": "ml_training", "airflow.run_id": RUN_ID, "reason": "manual"}


def test_result_comes_back_through_the_xcom_sidecar(gpu_pod):
    task, pod = gpu_pod
    assert task.do_xcom_push is True
    sidecar = containers(pod)["airflow-xcom-sidecar"]
    mounts = {mount["name"]: mount["mountPath"] for mount in containers(pod)["base"]["volumeMounts"]}
    sidecar_mounts = {mount["name"]: mount["mountPath"] for mount in sidecar["volumeMounts"]}
    assert mounts["xcom"] == sidecar_mounts["xcom"] == "/airflow/xcom"
    assert {"name": "xcom", "emptyDir": {}} in pod["spec"]["volumes"]


def test_pod_stops_itself_before_the_task_times_out(gpu_pod):
    task, pod = gpu_pod
    spec = pod["spec"]
    timeout = task.execution_timeout.total_seconds()
    assert task.execution_timeout == timedelta(minutes=60)
    assert timeout - 300 <= spec["activeDeadlineSeconds"] < timeout
    assert spec["restartPolicy"] == "Never"
    # a crash leaves the tail of its log as the container's termination message
    assert containers(pod)["base"]["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_pod_is_labelled_for_kubernetes_and_for_airflow(gpu_pod):
    labels = gpu_pod[1]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "churn-training"
    assert labels["app.kubernetes.io/component"] == "training"
    # added by the operator: how it finds the pod of this try again
    assert {labels[key] for key in ("dag_id", "task_id", "try_number")} == {"ml_training", "train", "1"}
    assert labels["run_id"]
    assert gpu_pod[1]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


# -- security -----------------------------------------------------------------------------------


def test_pod_meets_the_restricted_pod_security_standard(gpu_pod):
    dockerfile = (ROOT / "docker" / "training.Dockerfile").read_text()
    image_uid = int(re.search(r"^USER (\d+)", dockerfile, re.MULTILINE).group(1))
    assert f"--uid {image_uid}" in dockerfile
    assert_restricted(gpu_pod[1], image_uid)


def test_credentials_reach_the_pod_only_from_kubernetes_secrets(gpu_pod, affinity_pod, cpu_pod):
    for pod in (gpu_pod[1], affinity_pod, cpu_pod):
        assert_credentials_only_from_secrets(pod)
    env = {entry["name"]: entry for entry in containers(gpu_pod[1])["base"]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": TRACKING_URI}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "object-store-credentials"


def test_a_tracking_uri_with_a_password_is_refused(kubernetes_dag, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"tracking_uri": "https://airflow:hunter2@mlflow.example.com"}}),
    )
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI .* embeds a password"):
        build_pod(kubernetes_dag, gpus=1)


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("AIRFLOW_VAR_GPU_NODE_SELECTOR", "nvidia.com/gpu.present=true", "gpu_node_selector is not valid JSON"),
        ("AIRFLOW_VAR_GPU_NODE_SELECTOR", '{"nvidia.com/gpu.present": true}', "label values must be strings"),
        ("AIRFLOW_VAR_GPU_NODE_AFFINITY", '["not", "an", "object"]', "gpu_node_affinity must hold a JSON object"),
        (
            "AIRFLOW_VAR_GPU_NODE_AFFINITY",
            '{"requiredDuringScheduling": {"nodeSelectorTerms": []}}',
            "gpu_node_affinity is not a Kubernetes nodeAffinity",
        ),
        ("AIRFLOW_VAR_TRAINING_MEMORY", "16 GB", "training_memory='16 GB' is not a Kubernetes quantity"),
    ],
)
def test_a_malformed_variable_is_named_before_any_pod_is_created(kubernetes_dag, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        build_pod(kubernetes_dag, gpus=1)


# -- how Airflow runs it ------------------------------------------------------------------------


def test_operator_waits_for_gpu_nodes_cleans_up_and_caps_concurrency(gpu_pod):
    from scripts.airflow_settings import load_settings_file

    task = gpu_pod[0]
    assert task.task_id == "train"
    assert task.pool == "gpu"
    assert task.pool_slots == 1
    settings = load_settings_file(ROOT / "airflow_settings.yaml", {"MLOPS_HOME": "/srv/mlops"})
    pool_size = settings.pools["gpu"]["slots"]
    assert task.pool_slots <= pool_size, "a run may never need more slots than the pool has"
    assert task.schedule_timeout_seconds == 900 and task.startup_timeout_seconds == 900
    assert task.on_finish_action.value == "delete_pod"
    assert task.get_logs is True and task.log_events_on_failure is True
    assert task.kubernetes_conn_id == "kubernetes_default"


def test_kubernetes_profile_dag_serializes_for_the_scheduler(kubernetes_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.to_dict(kubernetes_dag)
    train = DagSerialization.from_dict(serialized).get_task("train")
    assert train.task_type == "GpuTrainingPodOperator"
    assert train.pool == "gpu"


# -- the local profile runs the same command line -----------------------------------------------


def test_local_profile_runs_the_same_command_line_as_a_subprocess(local_dag, kubernetes_dag):
    from mlops_airflow.training import LocalTrainingOperator

    local = local_dag.get_task("train")
    pod_task = kubernetes_dag.get_task("train")
    assert type(local) is LocalTrainingOperator
    assert (local.task_id, local.pool, local.pool_slots, local.execution_timeout) == (
        pod_task.task_id,
        pod_task.pool,
        pod_task.pool_slots,
        pod_task.execution_timeout,
    )
    assert pod_task.arguments == [*local.arguments, "--xcom-path", "/airflow/xcom/return.json"]
    # rendered for the same run, too
    rendered_local, _ = render(local_dag, gpus=2)
    rendered_pod, _ = render(kubernetes_dag, gpus=2)
    assert rendered_pod.arguments == [*rendered_local.arguments, "--xcom-path", "/airflow/xcom/return.json"]


def test_local_profile_parse_imports_no_kubernetes_code():
    assert parse_imports_kubernetes(DAG_FILE) == []
