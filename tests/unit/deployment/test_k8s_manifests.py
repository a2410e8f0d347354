"""The serving manifests: valid for recent Kubernetes versions (strict schemas), pinned to the
model version, hardened, and with no secret value in them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from include.deployment.k8s_manifests import (
    CONTAINER_PORT,
    RUN_AS_USER,
    deployment_rollout,
    deployment_version,
    render_deployment,
    render_hpa,
    render_service,
)
from include.deployment.rollout_config import RolloutConfig
from include.deployment.serving_config import ServingConfig, serving_name
from include.settings import Settings
from tests.unit.manifests import render_all

ROOT = Path(__file__).resolve().parents[3]
# the three newest minor versions kubernetes-validate 1.37.0 ships strict schemas for
KUBERNETES_VERSIONS = ("1.35", "1.36", "1.37")
MODEL_NAME = "customer_churn"
SECRET_VALUES = {
    "MLFLOW_TRACKING_PASSWORD": "hunter2-tracking-password",
    "MLFLOW_TRACKING_TOKEN": "tok-9f8e7d6c5b4a",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
}
BASE_ENV = {
    "MLOPS_PROFILE": "kubernetes",
    "MLFLOW_TRACKING_URI": "http://mlflow.mlops.svc.cluster.local:5000",
    "MLOPS_INFERENCE_LOG": "s3://mlops-data/inference-log",
}


def config_from(environ: dict[str, str]) -> ServingConfig:
    return ServingConfig.from_settings(Settings.from_env({**BASE_ENV, **environ}))


CONFIGS = {
    "defaults": {},
    "autoscaled": {
        "MLOPS_SERVING_HPA": "true",
        "MLOPS_SERVING_MIN_REPLICAS": "3",
        "MLOPS_SERVING_MAX_REPLICAS": "12",
        "MLOPS_SERVING_CPU_TARGET": "60",
        "MLOPS_SERVING_CONFIGMAP": "mlflow-endpoint",
        "MLOPS_SERVING_SERVICE_ACCOUNT": "model-server",
        "MLOPS_SERVING_IMAGE_PULL_SECRET": "ghcr-pull",
        "MLOPS_SERVING_CPU_LIMIT": "",
        "MLOPS_SERVING_INFERENCE_LOG": "off",
    },
}


@pytest.fixture(params=sorted(CONFIGS))
def config(request) -> ServingConfig:
    return config_from(CONFIGS[request.param])


def the_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_the_kubernetes_versions_are_the_newest_shipped():
    shipped = sorted(
        {re.match(r"\d+\.\d+", version).group(0) for version in all_versions()},
        key=lambda version: tuple(map(int, version.split("."))),
    )
    assert tuple(shipped[-3:]) == KUBERNETES_VERSIONS


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(config, kubernetes_version):
    manifests = render_all(MODEL_NAME, "7", config)

    assert [m["kind"] for m in manifests] == ["Deployment", "Service"] + (
        ["HorizontalPodAutoscaler"] if config.hpa_enabled else []
    )
    for manifest in manifests:
        assert kubernetes_validate.validate(manifest, kubernetes_version, strict=True) == kubernetes_version


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: the_container(d).update(readinessprobe=the_container(d).pop("readinessProbe")),  # a typo'd key
        lambda d: d["spec"].update(replicas="2"),
        lambda d: d["spec"].pop("selector"),
    ],
)
def test_the_strict_validation_catches_a_broken_deployment(break_it):
    deployment = render_deployment(MODEL_NAME, "7", config_from({}))
    broken = copy.deepcopy(deployment)
    break_it(broken)

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_deployment_is_pinned_to_the_model_version(config):
    deployment = render_deployment(MODEL_NAME, "7", config)
    container = the_container(deployment)

    assert container["image"] == "ghcr.io/example/churn-serving:latest"
    assert container["command"] == ["python", "-m", "include.serving"]
    assert container["args"][:9] == [
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--port",
        "8080",
        "--model-name",
        MODEL_NAME,
        "--version",
        "7",
    ]
    assert container["args"][9:] == (
        ["--inference-log", config.inference_log] if config.inference_log else ["--no-inference-log"]
    )
    assert deployment["metadata"]["labels"]["model-version"] == "7"
    assert deployment["metadata"]["annotations"]["model-version"] == "7"
    assert deployment["spec"]["template"]["metadata"]["labels"]["model-version"] == "7"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["mlops/model-uri"] == f"models:/{MODEL_NAME}/7"
    assert deployment_version(deployment) == "7"
    # another version changes the pod template (a new ReplicaSet) but never the selector (immutable)
    other = render_deployment(MODEL_NAME, "8", config)
    assert other["spec"]["selector"] == deployment["spec"]["selector"]
    assert other["spec"]["template"] != deployment["spec"]["template"]
    assert deployment_version(other) == "8"


def test_the_container_arguments_are_what_the_serving_command_line_accepts(config):
    from include.serving.__main__ import parse_args

    container = the_container(render_deployment(MODEL_NAME, "7", config))
    assert container["command"][-1] == "include.serving"

    args = parse_args(container["args"], Settings.from_env(BASE_ENV))

    assert (args.model_name, args.version, args.host, args.port) == (MODEL_NAME, "7", "0.0.0.0", CONTAINER_PORT)
    assert args.enable_admin is False  # no unauthenticated /admin/reload in the cluster
    assert args.inference_log == config.inference_log
    assert container["ports"] == [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]


def test_the_image_runs_as_the_user_and_port_the_manifest_expects():
    dockerfile = (ROOT / "docker" / "serving.Dockerfile").read_text()
    assert f"--uid {RUN_AS_USER}" in dockerfile and f"USER {RUN_AS_USER}" in dockerfile
    assert f"EXPOSE {CONTAINER_PORT}" in dockerfile
    assert '"-m", "include.serving"' in dockerfile


def test_probes_resources_and_rollout_strategy():
    config = config_from(
        {
            "MLOPS_SERVING_CPU_REQUEST": "250m",
            "MLOPS_SERVING_MEMORY_REQUEST": "768Mi",
            "MLOPS_SERVING_CPU_LIMIT": "1500m",
            "MLOPS_SERVING_MEMORY_LIMIT": "3Gi",
            "MLOPS_SERVING_REPLICAS": "3",
            "MLOPS_SERVING_PROGRESS_DEADLINE": "240",
        }
    )
    deployment = render_deployment(MODEL_NAME, "7", config)
    container = the_container(deployment)

    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    assert container["readinessProbe"]["periodSeconds"] <= container["livenessProbe"]["periodSeconds"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "768Mi"},
        "limits": {"cpu": "1500m", "memory": "3Gi"},
    }
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["revisionHistoryLimit"] >= 2  # the previous ReplicaSet must still be there to come back
    assert spec["progressDeadlineSeconds"] == 240


def test_the_pods_run_unprivileged_on_a_read_only_root(config):
    pod = render_deployment(MODEL_NAME, "7", config)["spec"]["template"]["spec"]
    container = the_container({"spec": {"template": {"spec": pod}}})

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # the only writable place is an emptyDir at /tmp, where HOME and TMPDIR point
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["HOME"] == env["TMPDIR"] == "/tmp" and env["MLOPS_HOME"].startswith("/tmp/")


def test_credentials_come_from_a_secret_and_no_secret_value_is_rendered(monkeypatch):
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    plain = config_from({**SECRET_VALUES, "MLOPS_SERVING_SECRET": "churn-serving-credentials"})
    from_configmap = config_from({**SECRET_VALUES, "MLOPS_SERVING_CONFIGMAP": "mlflow-endpoint"})

    for config in (plain, from_configmap):
        manifests = render_all(MODEL_NAME, "7", config)
        rendered = json.dumps(manifests)
        for name, value in SECRET_VALUES.items():
            assert value not in rendered, f"the value of {name} was rendered into a manifest"
        container = the_container(manifests[0])
        assert container["envFrom"] == [{"secretRef": {"name": config.credentials_secret}}]
        for item in container["env"]:
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", item["name"]):
                assert "value" not in item, f"{item['name']} is set to a literal value"

    tracking = {item["name"]: item for item in the_container(render_deployment(MODEL_NAME, "7", plain))["env"]}
    assert tracking["MLFLOW_TRACKING_URI"]["value"] == BASE_ENV["MLFLOW_TRACKING_URI"]
    tracking = {item["name"]: item for item in the_container(render_deployment(MODEL_NAME, "7", from_configmap))["env"]}
    assert tracking["MLFLOW_TRACKING_URI"] == {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"configMapKeyRef": {"name": "mlflow-endpoint", "key": "MLFLOW_TRACKING_URI"}},
    }


@pytest.mark.parametrize(
    "environ, refused",
    [
        ({"MLOPS_SERVING_TRACKING_URI": "https://admin:hunter2@mlflow.example.com"}, "carries a password"),
        ({"MLFLOW_TRACKING_URI": "sqlite:////srv/mlflow.db"}, "local store the pods cannot reach"),
        ({"MLOPS_INFERENCE_LOG": "/var/lib/inference-log"}, "is a local path"),
        ({"MLOPS_SERVING_REPLICAS": "two"}, "MLOPS_SERVING_REPLICAS='two' is not a whole number"),
        ({"MLOPS_SERVING_REPLICAS": "0"}, "replicas must be at least 1"),
        ({"MLOPS_SERVING_HPA": "maybe"}, "MLOPS_SERVING_HPA='maybe' is not true or false"),
        (
            {"MLOPS_SERVING_HPA": "1", "MLOPS_SERVING_MIN_REPLICAS": "5", "MLOPS_SERVING_MAX_REPLICAS": "2"},
            "min replicas <= max replicas",
        ),
        ({"MLOPS_SERVING_CPU_REQUEST": "lots"}, "not a Kubernetes quantity"),
        ({"MLOPS_SERVING_NAME": "Churn_Serving"}, "not a DNS label"),
        ({"MLOPS_SERVING_NAMESPACE": "ml serving"}, "not a DNS label"),
        ({"MLOPS_SERVING_IMAGE_PULL_POLICY": "Sometimes"}, "pull policy"),
    ],
)
def test_a_bad_configuration_is_refused_with_its_reason(environ, refused):
    with pytest.raises(ValueError, match=re.escape(refused)):
        config_from(environ)


def test_the_configuration_comes_from_the_environment():
    config = config_from(
        {
            "MLOPS_SERVING_NAMESPACE": "churn-prod",
            "MLOPS_SERVING_IMAGE": "reg.example/serve@sha256:ab",
            "MLOPS_SERVING_REPLICAS": "4",
            "MLOPS_SERVING_NAME": "churn-api",
            "MLOPS_SERVING_URL": "http://churn-api.example/",
            "MLOPS_SERVING_SECRET": "",
        }
    )

    assert (config.namespace, config.image, config.replicas, config.resource_name(MODEL_NAME)) == (
        "churn-prod",
        "reg.example/serve@sha256:ab",
        4,
        "churn-api",
    )
    assert config.credentials_secret is None
    assert "envFrom" not in the_container(render_deployment(MODEL_NAME, "1", config))
    assert config.service_url(MODEL_NAME) == "http://churn-api.example"
    assert config.inference_log == BASE_ENV["MLOPS_INFERENCE_LOG"]
    assert config_from({}).service_url(MODEL_NAME) == "http://customer-churn-serving.ml-serving.svc.cluster.local"
    assert config_from({"MLOPS_SERVING_INFERENCE_LOG": "off"}).inference_log is None


def test_labels_and_selectors_tie_the_deployment_service_and_hpa_together():
    config = config_from(
        {
            "MLOPS_SERVING_HPA": "true",
            "MLOPS_SERVING_MIN_REPLICAS": "2",
            "MLOPS_SERVING_MAX_REPLICAS": "10",
            "MLOPS_SERVING_CPU_TARGET": "65",
        }
    )
    deployment, service, hpa = render_all(MODEL_NAME, "7", config)
    name = "customer-churn-serving"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]

    assert {m["metadata"]["name"] for m in (deployment, service, hpa)} == {name}
    assert {m["metadata"]["namespace"] for m in (deployment, service, hpa)} == {"ml-serving"}
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"] == selector
    assert "model-version" not in selector, "a version in the selector would break the next rollout"
    topology = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert topology["labelSelector"]["matchLabels"] == selector
    for manifest in (deployment, service, hpa):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "airflow-mlops" and labels["model-name"] == MODEL_NAME
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["ports"][0]["targetPort"] == the_container(deployment)["ports"][0]["name"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 65}}}
    ]
    # the autoscaler computes utilisation against the CPU request, which must be set
    assert the_container(deployment)["resources"]["requests"]["cpu"]
    assert deployment["spec"]["replicas"] == 2
    assert render_hpa(MODEL_NAME, config_from({})) is None
    assert render_service(MODEL_NAME, config) == service


@pytest.mark.parametrize(
    "model_name, expected",
    [
        ("customer_churn", "customer-churn-serving"),
        ("Fraud Detection v2", "fraud-detection-v2-serving"),
        ("2024_model", "model-serving"),
        ("x" * 80, "x" * 55 + "-serving"),
    ],
)
def test_serving_names_are_dns_labels(model_name, expected):
    assert serving_name(model_name) == expected
    assert re.match(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", expected)


def test_the_version_is_read_back_from_the_args_when_the_label_is_missing():
    deployment = render_deployment(MODEL_NAME, "12", config_from({}))
    del deployment["spec"]["template"]["metadata"]["labels"]["model-version"]

    assert deployment_version(deployment) == "12"
    assert deployment_version(None) is None


def test_a_version_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="positive integer"):
        render_deployment(MODEL_NAME, "latest", config_from({}))


ROLLOUTS = {
    "shadow": RolloutConfig("8", "shadow"),
    "canary": RolloutConfig("8", "canary", 0.05, "customer_id"),
}


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("rollout", ROLLOUTS.values(), ids=ROLLOUTS.keys())
def test_a_rollouts_deployment_validates_strictly_and_carries_the_rollout(config, rollout, kubernetes_version):
    from include.serving.__main__ import parse_args

    deployment = render_deployment(MODEL_NAME, "7", config, rollout=rollout)

    assert kubernetes_validate.validate(deployment, kubernetes_version, strict=True) == kubernetes_version
    assert deployment_version(deployment) == "7", "the champion stays the version the Deployment serves"
    assert deployment_rollout(deployment) == rollout
    assert deployment_rollout(render_deployment(MODEL_NAME, "7", config)) is None
    args = parse_args(the_container(deployment)["args"], Settings.from_env(BASE_ENV))
    assert (args.version, args.candidate_version, args.rollout_mode) == ("7", "8", rollout.mode)
    assert (args.sticky_column, args.allow_score_with, args.enable_admin) == (rollout.sticky_column, True, False)
    if rollout.mode == "canary":
        assert args.canary_share == rollout.canary_share
    # a rollout is a new pod template (rolled out like a version change) behind the same selector
    plain = render_deployment(MODEL_NAME, "7", config)
    assert deployment["spec"]["selector"] == plain["spec"]["selector"]
    assert deployment["spec"]["template"] != plain["spec"]["template"]
