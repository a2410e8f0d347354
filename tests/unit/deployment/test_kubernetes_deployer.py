"""The kubernetes deploy step against an in-memory API server, a real registry and real HTTP.

No cluster here, so three stand-ins, each as close to the real thing as fits in a test:

- :class:`FakeKubernetes` is a ``kubernetes.client.ApiClient`` whose HTTP request is
  answered in memory. The deployer's calls go through the real client code
  (``AppsV1Api``... parameter checks, URL building, body serialization, errors raised
  as ``ApiException``), and the fake keeps what an API server
  and the deployment controller would: resourceVersion (409 on a stale replace),
  generation, ReplicaSets and their revisions (a template seen before gets its old
  ReplicaSet back with a new revision number), and a scripted rollout per model version
  (``ready``, ``stuck``: never ready, ``deadline``: ProgressDeadlineExceeded).
- :class:`ServiceStandIn` is the Service: an HTTP server on 127.0.0.1 that answers with
  the pods the fake made ready (old pods keep serving until a rollout completes, as
  with maxUnavailable 0), only when the Service's selector matches their labels, and
  with the real serving code (``include.serving.app.answer``) over the real registered
  model version.
- the MLflow registry is real (SQLite, ``mlops_env``).
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from include.deployment import DeployFailed, deployer_for
from include.deployment.k8s_manifests import (
    REVISION_ANNOTATION,
    deployment_rollout,
    deployment_version,
    render_deployment,
)
from include.deployment.kubernetes import KubernetesDeployer
from include.deployment.rollout import RolloutFailed, rollout_state
from include.deployment.rollout_config import RolloutConfig
from include.deployment.serving_config import ServingConfig
from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version
from tests.unit.serving_models import ChurnModel, RaisingModel, forget_mlflow_uris, register, sample_frame

MODEL_NAME = "customer_churn"
NAMESPACE = "ml-serving"
NAME = "customer-churn-serving"
KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "pods": "Pod",
}
GROUP_VERSIONS = {"deployments": "apps/v1", "services": "v1", "horizontalpodautoscalers": "autoscaling/v2"}


class _Response:
    """What the client's REST layer hands back (urllib3 response shape)."""

    def __init__(self, status: int, payload: dict, reason: str = "OK"):
        self.status = status
        self.reason = reason
        self.data = json.dumps(payload).encode()

    def getheaders(self) -> dict:
        return {"content-type": "application/json"}

    def getheader(self, name: str, default=None):
        return self.getheaders().get(name.lower(), default)


def _error(status: int, reason: str, message: str) -> ApiException:
    return ApiException(
        http_resp=_Response(
            status,
            {"kind": "Status", "status": "Failure", "message": message, "reason": reason, "code": status},
            reason,
        )
    )


def _same(left: dict | None, right: dict | None) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


class FakeKubernetes(ApiClient):
    """An in-memory API server and deployment controller behind the real Kubernetes client."""

    def __init__(self):
        super().__init__(Configuration(host="https://kubernetes.invalid"))
        self.objects: dict[tuple[str, str], dict] = {}  # (plural, name) -> object, all in NAMESPACE
        self.calls: list[tuple[str, str]] = []  # (verb, kind): read, read_status, create, replace, delete, list
        self.bodies: list[tuple[str, str, dict]] = []  # (verb, kind, body) of every create and replace
        self.replica_sets: list[dict] = []  # {"revision": int, "template": dict}, one per distinct template
        self.behaviour: dict[str, str] = {}  # model version -> "ready" (default), "stuck" or "deadline"
        self.ready_template: dict | None = None  # the template of the pods that are ready (the Service's endpoints)
        self.endpoints_override: str | None = None  # a version the Service answers for whatever the pods are
        self.conflicts: dict[tuple[str, str], int] = {}  # (verb, kind) -> how many 409s to answer first
        self._resource_version = 100
        self._progress: tuple[int, int] = (0, 0)  # (generation, polls of it so far)

    # ------------------------------------------------------------ HTTP layer

    def request(
        self,
        method,
        url,
        query_params=None,
        headers=None,
        post_params=None,
        body=None,
        _preload_content=True,
        _request_timeout=None,
    ):
        parts = [part for part in urlsplit(url).path.split("/") if part]
        namespace_at = parts.index("namespaces")
        assert parts[namespace_at + 1] == NAMESPACE, f"the deployer used namespace {parts[namespace_at + 1]}"
        rest = parts[namespace_at + 2 :]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
        kind = KINDS[plural]
        assert "/".join(parts[1:namespace_at]) == GROUP_VERSIONS.get(plural, "v1"), url
        query = {key: value for key, value in (query_params or [])}
        verb = {
            ("GET", False): "read",
            ("GET", True): "read_status",
            ("POST", False): "create",
            ("PUT", False): "replace",
            ("DELETE", False): "delete",
        }[(method, sub == "status")]
        if method == "GET" and name is None:
            verb = "list"
        self.calls.append((verb, kind))
        if verb in ("create", "replace"):
            self.bodies.append((verb, kind, copy.deepcopy(body)))
        pending = self.conflicts.get((verb, kind), 0)
        if pending:
            self.conflicts[(verb, kind)] = pending - 1
            self._bump(self.objects[(plural, name or body["metadata"]["name"])])  # someone else wrote it
            raise _error(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        handler = getattr(self, f"_{verb}")
        return _Response(*handler(plural, name, body, query))

    def _read(self, plural, name, body, query):
        stored = self.objects.get((plural, name))
        if stored is None:
            raise _error(404, "NotFound", f'{plural} "{name}" not found')
        return 200, stored

    def _read_status(self, plural, name, body, query):
        status, stored = self._read(plural, name, body, query)
        self._advance_rollout(stored)
        return status, stored

    def _create(self, plural, name, body, query):
        name = body["metadata"]["name"]
        if (plural, name) in self.objects:
            raise _error(409, "AlreadyExists", f'{plural} "{name}" already exists')
        stored = copy.deepcopy(body)
        stored["metadata"].update(uid=f"uid-{plural}-{len(self.calls)}", generation=1)
        # what the API server answers for a fresh object (an HPA's status has desiredReplicas from the start)
        stored["status"] = {"currentReplicas": 0, "desiredReplicas": 0} if plural == "horizontalpodautoscalers" else {}
        if plural == "services":
            stored["spec"].setdefault("clusterIP", "10.96.0.42")
            stored["spec"].setdefault("clusterIPs", ["10.96.0.42"])
        self._bump(stored)
        self.objects[(plural, name)] = stored
        if plural == "deployments":
            self._new_revision(stored)
        return 201, stored

    def _replace(self, plural, name, body, query):
        status, stored = self._read(plural, name, body, query)
        sent = body["metadata"].get("resourceVersion")
        if sent is not None and sent != stored["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", "the object has been modified")
        if plural == "deployments" and body["spec"]["selector"] != stored["spec"]["selector"]:
            raise _error(422, "Invalid", "spec.selector: Invalid value: field is immutable")
        if plural == "services" and body["spec"].get("clusterIP") != stored["spec"]["clusterIP"]:
            raise _error(422, "Invalid", "spec.clusterIP: Invalid value: field is immutable")
        replaced = copy.deepcopy(body)
        replaced["metadata"].update(uid=stored["metadata"]["uid"], generation=stored["metadata"]["generation"])
        replaced["status"] = stored.get("status", {})
        if not _same(body["spec"], stored["spec"]):
            replaced["metadata"]["generation"] += 1
        self._bump(replaced)
        self.objects[(plural, name)] = replaced
        if plural == "deployments":
            self._new_revision(replaced)
        return 200, replaced

    def _delete(self, plural, name, body, query):
        assert query.get("propagationPolicy") == "Background"
        status, stored = self._read(plural, name, body, query)
        del self.objects[(plural, name)]
        if plural == "deployments":
            self.ready_template = None
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def _list(self, plural, name, body, query):
        wanted = dict(pair.split("=", 1) for pair in query.get("labelSelector", "").split(",") if pair)
        items = [pod for pod in self._pods() if wanted.items() <= pod["metadata"]["labels"].items()]
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    # ----------------------------------------------------- controller model

    def _bump(self, stored: dict) -> None:
        self._resource_version += 1
        stored["metadata"]["resourceVersion"] = str(self._resource_version)

    def _new_revision(self, deployment: dict) -> None:
        """The deployment controller: a template seen before gets its ReplicaSet back, with the next revision."""
        template = deployment["spec"]["template"]
        newest = max((replica_set["revision"] for replica_set in self.replica_sets), default=0)
        known = next((rs for rs in self.replica_sets if _same(rs["template"], template)), None)
        if known is None:
            known = {"revision": newest + 1, "template": copy.deepcopy(template)}
            self.replica_sets.append(known)
        elif known["revision"] != newest:
            known["revision"] = newest + 1
        deployment["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(known["revision"])

    def _advance_rollout(self, deployment: dict) -> None:
        """One status poll of the rollout: observed, then (per the scripted behaviour) complete or not."""
        generation, wanted = deployment["metadata"]["generation"], deployment["spec"].get("replicas", 1)
        template = deployment["spec"]["template"]
        polls = self._progress[1] if self._progress[0] == generation else 0
        self._progress = (generation, polls + 1)
        status = deployment["status"]
        if polls == 0 and status.get("observedGeneration", 0) < generation:
            status["observedGeneration"] = generation - 1
            return
        status["observedGeneration"] = generation
        behaviour = "ready" if _same(template, self.ready_template) else self.behaviour.get(_version(template), "ready")
        old = 0 if self.ready_template is None else wanted
        if behaviour == "ready" and polls >= 1:
            status.update(
                replicas=wanted,
                updatedReplicas=wanted,
                readyReplicas=wanted,
                availableReplicas=wanted,
                conditions=[
                    _condition("Available", "True", "MinimumReplicasAvailable"),
                    _condition("Progressing", "True", "NewReplicaSetAvailable"),
                ],
            )
            status.pop("unavailableReplicas", None)
            self.ready_template = copy.deepcopy(template)
            return
        status.update(
            replicas=old + 1,
            updatedReplicas=1,
            readyReplicas=old,
            availableReplicas=old,
            unavailableReplicas=1,
            conditions=[_condition("Progressing", "True", "ReplicaSetUpdated")],
        )
        if behaviour == "deadline" and polls >= 2:
            status["conditions"] = [
                _condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{NAME}-2" has timed out progressing.',
                )
            ]

    def _pods(self) -> list[dict]:
        """The pods of the newest template, when its rollout is scripted to fail: they crash-loop."""
        deployment = self.objects.get(("deployments", NAME))
        if deployment is None:
            return []
        template = deployment["spec"]["template"]
        if self.behaviour.get(_version(template), "ready") == "ready":
            return []
        return [
            {
                "metadata": {"name": f"{NAME}-7c9d-x2x4q", "labels": template["metadata"]["labels"]},
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {
                            "name": "model-server",
                            "image": "serving:test",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 4,
                            "state": {
                                "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": "back-off 1m20s restarting failed container=model-server",
                                }
                            },
                        }
                    ],
                },
            }
        ]

    # ------------------------------------------------------- what is served

    def deployment(self) -> dict | None:
        return self.objects.get(("deployments", NAME))

    def endpoint_version(self) -> str | None:
        """The version the Service's endpoints serve: the ready pods its selector matches."""
        if self.endpoints_override is not None:
            return self.endpoints_override
        service = self.objects.get(("services", NAME))
        if service is None or self.ready_template is None:
            return None
        if not service["spec"]["selector"].items() <= self.ready_template["metadata"]["labels"].items():
            return None
        return _version(self.ready_template)

    def endpoint_rollout(self):
        """The rollout the Service's endpoints run (from the ready pods' arguments), or None."""
        if self.endpoint_version() is None or self.endpoints_override is not None:
            return None
        return deployment_rollout({"spec": {"template": self.ready_template}})

    def verbs(self, since: int = 0) -> list[str]:
        return [f"{verb} {kind}" for verb, kind in self.calls[since:]]


def _version(template: dict) -> str:
    return template["metadata"]["labels"]["model-version"]


def _condition(kind: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


class ServiceStandIn:
    """The Service on 127.0.0.1, answering as the real server of the version the fake's ready pods run."""

    def __init__(self, cluster: FakeKubernetes, tracking_uri: str):
        from include.serving.app import DEFAULT_MAX_ROWS
        from include.serving.model import load_served_model
        from tests.unit.serving_models import predict

        loaded: dict[str, object] = {}
        lock = threading.Lock()

        def served(version: str):
            with lock:
                if version not in loaded:
                    loaded[version] = load_served_model(MODEL_NAME, version, tracking_uri)
                return loaded[version]

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, headers: dict) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _no_endpoints(self) -> None:
                self._send(
                    503, b'{"message": "no ready endpoints behind the Service"}', {"Content-Type": "application/json"}
                )

            def do_GET(self):
                version, rollout = cluster.endpoint_version(), cluster.endpoint_rollout()
                if self.path not in ("/health", "/metrics") or version is None:
                    return self._no_endpoints()
                if self.path == "/metrics":
                    versions = [version] + ([rollout.candidate_version] if rollout else [])
                    text = "".join(f'model_version_rows_total{{version="{v}"}} 0.0\n' for v in versions)
                    return self._send(200, text.encode(), {"Content-Type": "text/plain; version=0.0.4"})
                health = {"status": "ok", "model_name": MODEL_NAME, "model_version": version}
                if rollout is not None:
                    health.update(candidate_version=rollout.candidate_version, rollout_mode=rollout.mode)
                self._send(
                    200, json.dumps(health).encode(), {"Content-Type": "application/json", "X-Model-Version": version}
                )

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                version, rollout = cluster.endpoint_version(), cluster.endpoint_rollout()
                if self.path != "/invocations" or version is None:
                    return self._no_endpoints()
                if rollout is not None and self.headers.get("X-Score-With") == "candidate":
                    version = rollout.candidate_version  # the server's smoke-test route to its candidate
                response = predict(body, served(version), DEFAULT_MAX_ROWS)
                self._send(response.status_code, response.body, dict(response.headers))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def empty_registry(tmp_path_factory):
    """An MLflow database with its schema in place, copied into each test's home: migrating a
    fresh SQLite file takes a second per test. Its default experiment keeps artifacts in a
    temporary folder, not in the checkout's ./mlruns."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("registry-template")
    SqlAlchemyStore(f"sqlite:///{folder}/mlflow.db", (folder / "artifacts").as_uri())
    return folder / "mlflow.db"


@pytest.fixture
def settings(mlops_env, monkeypatch, empty_registry):
    from include.tracking import configure

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    database = mlops_env.tracking_uri.removeprefix("sqlite:///")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_registry, database)
    configure(mlops_env)
    yield mlops_env.replace(profile="kubernetes")
    forget_mlflow_uris()


@pytest.fixture
def cluster():
    return FakeKubernetes()


@pytest.fixture
def service(cluster, settings):
    stand_in = ServiceStandIn(cluster, settings.tracking_uri)
    yield stand_in
    stand_in.close()


def serving_config(service: ServiceStandIn, **changes) -> ServingConfig:
    return ServingConfig(
        namespace=NAMESPACE,
        image="registry.example.com/churn-serving:1.4.2",
        tracking_uri="http://mlflow.mlops.svc.cluster.local:5000",
        inference_log="s3://mlops/inference-log",
        url=service.url,
        **changes,
    )


def make_deployer(settings, cluster, service, rollout_timeout: float = 5.0, **changes) -> KubernetesDeployer:
    return KubernetesDeployer(
        settings,
        cluster,
        config=serving_config(service, **changes),
        rollout_timeout=rollout_timeout,
        poll_interval=0.01,
        settle_timeout=0.3,
    )


@pytest.fixture
def promotions(cluster, monkeypatch):
    """Alias moves, recorded in the cluster's call log so their order against the API calls shows."""
    import include.registry as registry

    original = registry.promote_champion

    def recording(model_name, version, **kwargs):
        cluster.calls.append(("promote", f"champion -> {version}"))
        return original(model_name, version, **kwargs)

    monkeypatch.setattr(registry, "promote_champion", recording)


@pytest.fixture
def champion_served(settings, cluster, service, promotions):
    """Version 1 deployed through the deployer and made champion; a second, different good version registered."""
    first, second = ChurnModel(), ChurnModel(regularization=0.001, seed=7)
    v1, v2 = register(MODEL_NAME, first), register(MODEL_NAME, second)
    sample = sample_frame(rows=5)
    make_deployer(settings, cluster, service).deploy(MODEL_NAME, v1, sample, first.probabilities(sample))
    assert alias_version(MODEL_NAME, CHAMPION) == v1 and cluster.endpoint_version() == v1
    return {
        "v1": v1,
        "v2": v2,
        "first": first,
        "second": second,
        "sample": sample,
        "v1_deployment": copy.deepcopy(cluster.deployment()),
    }


def assert_rolled_back_to_v1(cluster: FakeKubernetes, state: dict, since: int) -> None:
    """The spec read before the deploy was re-applied: the v1 ReplicaSet is back, the Service serves v1."""
    v1 = state["v1_deployment"]
    replaces = [body for verb, kind, body in cluster.bodies if (verb, kind) == ("replace", "Deployment")]
    rollback_body = replaces[-1]
    assert rollback_body["spec"] == v1["spec"], "the rollback did not re-apply the previous Deployment spec"
    assert cluster.deployment()["spec"]["template"] == v1["spec"]["template"]
    # no third ReplicaSet: the v1 one came back, renumbered as the newest revision (what `rollout undo` does)
    assert len(cluster.replica_sets) == 2
    assert cluster.deployment()["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    verbs = cluster.verbs(since)
    last_apply = max(index for index, verb in enumerate(verbs) if verb == "replace Deployment")
    assert "read_status Deployment" in verbs[last_apply:], "the rollback's rollout was not waited for"
    assert not any(verb.startswith("promote") for verb in verbs)
    assert cluster.endpoint_version() == state["v1"]
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"]
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) is None


# --------------------------------------------------------------------- tests


def test_a_rollout_that_succeeds_is_smoke_tested_through_the_service_then_promoted(
    settings, cluster, service, champion_served
):
    state = champion_served
    since = len(cluster.calls)
    deployer = make_deployer(settings, cluster, service)

    result = deployer.deploy(MODEL_NAME, state["v2"], state["sample"], state["second"].probabilities(state["sample"]))

    verbs = cluster.verbs(since)
    assert verbs[:5] == [
        "read Deployment",
        "read Service",
        "read HorizontalPodAutoscaler",
        "replace Deployment",
        "replace Service",
    ]
    polls = verbs[5:-1]
    assert polls and set(polls) == {"read_status Deployment"}
    assert verbs[-1] == f"promote champion -> {state['v2']}"
    assert (result.version, result.previous_champion, result.url) == (state["v2"], state["v1"], service.url)
    assert "/health reports version 2" in result.smoke.checks
    assert any("within 1e-06 of the expected" in check for check in result.smoke.checks)
    assert alias_version(MODEL_NAME, CHAMPION) == state["v2"]
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) == state["v1"]
    deployment = cluster.deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--version") + 1] == state["v2"]
    assert deployment["metadata"]["annotations"][REVISION_ANNOTATION] == "2"
    # the replace carried the resourceVersion it read, and the Service kept its allocated address
    replaced = {kind: body for verb, kind, body in cluster.bodies[-2:]}
    assert (
        replaced["Deployment"]["metadata"]["resourceVersion"] == state["v1_deployment"]["metadata"]["resourceVersion"]
    )
    assert replaced["Service"]["spec"]["clusterIP"] == "10.96.0.42"
    assert cluster.endpoint_version() == state["v2"]


def test_the_first_deploy_creates_the_objects_and_an_hpa_keeps_its_replica_count(
    settings, cluster, service, promotions
):
    model = ChurnModel()
    v1, v2 = register(MODEL_NAME, model), register(MODEL_NAME, ChurnModel())
    sample = sample_frame(rows=4)
    deployer = make_deployer(settings, cluster, service, hpa_enabled=True, min_replicas=2, max_replicas=8)

    result = deployer.deploy(MODEL_NAME, v1, sample, model.probabilities(sample))

    verbs = cluster.verbs()
    assert verbs[:6] == [
        "read Deployment",
        "read Service",
        "read HorizontalPodAutoscaler",
        "create Deployment",
        "create Service",
        "create HorizontalPodAutoscaler",
    ]
    assert verbs[-1] == f"promote champion -> {v1}" and result.previous_champion is None
    assert cluster.deployment()["spec"]["replicas"] == 2
    assert cluster.objects[("horizontalpodautoscalers", NAME)]["spec"]["scaleTargetRef"]["name"] == NAME

    cluster.deployment()["spec"]["replicas"] = 5  # the autoscaler scaled out meanwhile
    deployer.deploy(MODEL_NAME, v2, sample)

    assert cluster.deployment()["spec"]["replicas"] == 5, "the rollout undid the autoscaler's replica count"
    assert alias_version(MODEL_NAME, CHAMPION) == v2


@pytest.mark.parametrize(
    "behaviour, why",
    [
        ("stuck", "did not complete within 0.5s: 1 of 2 replicas updated"),
        ("deadline", "exceeded its progress deadline"),
    ],
)
def test_a_rollout_that_never_becomes_ready_is_rolled_back(settings, cluster, service, champion_served, behaviour, why):
    state = champion_served
    cluster.behaviour[state["v2"]] = behaviour
    since = len(cluster.calls)
    # the deadline case must fail on the condition, long before its own timeout
    deployer = make_deployer(settings, cluster, service, rollout_timeout=0.5 if behaviour == "stuck" else 60)

    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(MODEL_NAME, state["v2"], state["sample"])

    message = str(failed.value)
    assert failed.value.stage == "waiting for the rollout"
    assert why in message and "CrashLoopBackOff" in message, message
    assert "the Deployment spec of revision 1 was re-applied (Kubernetes recorded it as revision 3)" in message
    assert f"{MODEL_NAME} version {state['v1']} is served" in message
    assert f"/health reports version {state['v1']}" in failed.value.served_now
    if behaviour == "deadline":
        assert cluster.verbs(since).count("read_status Deployment") < 10
    assert_rolled_back_to_v1(cluster, state, since)


def test_a_failed_smoke_test_is_rolled_back(settings, cluster, service, champion_served):
    state = champion_served
    broken = register(MODEL_NAME, RaisingModel())
    since = len(cluster.calls)

    with pytest.raises(DeployFailed) as failed:
        make_deployer(settings, cluster, service).deploy(MODEL_NAME, broken, state["sample"])

    assert failed.value.stage == "running the smoke test"
    assert "POST /invocations answered HTTP 500" in failed.value.reason
    assert "feature pipeline exploded" in failed.value.reason
    assert cluster.verbs(since).count("replace Deployment") == 2  # the deploy, then the rollback
    assert_rolled_back_to_v1(cluster, state, since)


def test_a_service_answering_for_another_version_fails_the_smoke_test(settings, cluster, service, champion_served):
    state = champion_served
    cluster.endpoints_override = state["v1"]  # e.g. a Service selector that still picks the old pods
    since = len(cluster.calls)

    with pytest.raises(DeployFailed) as failed:
        make_deployer(settings, cluster, service).deploy(MODEL_NAME, state["v2"], state["sample"])

    assert failed.value.stage == "running the smoke test"
    assert f"/health reports version {state['v1']}, expected {state['v2']}" in failed.value.reason
    assert f"answered by version {state['v1']}" in failed.value.reason
    cluster.endpoints_override = None
    assert_rolled_back_to_v1(cluster, state, since)


@pytest.mark.parametrize("failure", ["smoke test", "rollout"])
def test_a_failed_first_deploy_deletes_what_it_created(settings, cluster, service, promotions, failure):
    if failure == "smoke test":
        version = register(MODEL_NAME, RaisingModel())
    else:
        version = register(MODEL_NAME, ChurnModel())
        cluster.behaviour[version] = "stuck"
    deployer = make_deployer(settings, cluster, service, rollout_timeout=0.3, hpa_enabled=True)

    with pytest.raises(DeployFailed, match="nothing is served: there was no Deployment before") as failed:
        deployer.deploy(MODEL_NAME, version, sample_frame(rows=3))

    assert failed.value.stage == ("running the smoke test" if failure == "smoke test" else "waiting for the rollout")
    verbs = cluster.verbs()
    assert verbs[3:6] == ["create Deployment", "create Service", "create HorizontalPodAutoscaler"]
    assert verbs[-3:] == ["delete HorizontalPodAutoscaler", "delete Service", "delete Deployment"]
    assert cluster.objects == {}
    assert alias_version(MODEL_NAME, CHAMPION) is None
    assert not any(verb.startswith("promote") for verb in verbs)


def test_an_interrupted_rollout_is_rolled_back_to_the_champion_not_to_itself(
    settings, cluster, service, champion_served
):
    """A deploy killed half-way left a stuck rollout of version 3; the next deploy must not restore that."""
    state = champion_served
    stuck = register(MODEL_NAME, ChurnModel(seed=3))
    cluster.behaviour[stuck] = "stuck"
    with pytest.raises(DeployFailed):
        make_deployer(settings, cluster, service, rollout_timeout=0.2).deploy(MODEL_NAME, stuck, state["sample"])
    # simulate the interruption: the stuck spec stays applied, as if no rollback had run
    half_done = cluster.deployment()
    half_done["spec"]["template"] = render_deployment(MODEL_NAME, stuck, serving_config(service))["spec"]["template"]
    half_done["metadata"]["generation"] += 1
    half_done["status"]["updatedReplicas"] = 1
    cluster.behaviour[state["v2"]] = "stuck"

    with pytest.raises(DeployFailed) as failed:
        make_deployer(settings, cluster, service, rollout_timeout=0.3).deploy(MODEL_NAME, state["v2"], state["sample"])

    assert "the champion's Deployment" in failed.value.served_now
    assert cluster.deployment()["spec"]["template"] == state["v1_deployment"]["spec"]["template"]
    assert cluster.endpoint_version() == state["v1"]
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"]


def test_a_conflicting_write_is_retried_on_a_fresh_read(settings, cluster, service, champion_served):
    state = champion_served
    cluster.conflicts[("replace", "Deployment")] = 1
    since = len(cluster.calls)

    make_deployer(settings, cluster, service).deploy(MODEL_NAME, state["v2"], state["sample"])

    verbs = cluster.verbs(since)
    assert verbs[3:6] == ["replace Deployment", "read Deployment", "replace Deployment"]
    assert alias_version(MODEL_NAME, CHAMPION) == state["v2"]


def test_another_models_deployment_is_left_alone(settings, cluster, service, champion_served):
    state = champion_served
    cluster.deployment()["metadata"]["labels"]["model-name"] = "fraud_detection"
    before = copy.deepcopy(cluster.objects)

    with pytest.raises(DeployFailed, match="serves model 'fraud_detection'.*nothing was changed"):
        make_deployer(settings, cluster, service).deploy(MODEL_NAME, state["v2"], state["sample"])

    assert cluster.objects == before
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"]


def test_deployer_for_the_kubernetes_profile_needs_a_client(settings, cluster, monkeypatch):
    from include.settings import Settings

    monkeypatch.setenv("MLOPS_PROFILE", "kubernetes")
    monkeypatch.setenv("MLOPS_SERVING_TRACKING_URI", "http://mlflow.mlops.svc.cluster.local:5000")
    monkeypatch.setenv("MLOPS_SERVING_INFERENCE_LOG", "off")
    # the variables reach the deployer through the settings a task builds once they are set
    settings = Settings.from_env()

    assert isinstance(deployer_for(settings, kubernetes_client=cluster), KubernetesDeployer)
    with pytest.raises(ValueError, match="kubernetes_client=KubernetesHook"):
        deployer_for(settings)


@pytest.mark.parametrize(
    "status, spec_replicas, expected",
    [
        ({"observedGeneration": 1}, 2, (False, "not yet observed generation 2")),
        (
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2},
            2,
            (False, "1 of 2 replicas updated"),
        ),
        (
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2},
            2,
            (False, "1 old replicas pending termination"),
        ),
        (
            {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
            2,
            (False, "1 of 2 updated replicas available"),
        ),
        (
            {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
            2,
            (True, "2 of 2 replicas updated and available"),
        ),
    ],
)
def test_rollout_state_follows_kubectl_rollout_status(status, spec_replicas, expected):
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": spec_replicas}, "status": status}
    complete, progress = rollout_state(deployment)
    assert complete is expected[0] and expected[1] in progress


def test_rollout_state_fails_on_the_progress_deadline_only_for_the_observed_generation():
    deadline = [_condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out progressing")]
    stale = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "conditions": deadline},
    }
    assert rollout_state(stale)[0] is False  # the condition belongs to the previous rollout
    with pytest.raises(RolloutFailed, match="timed out progressing"):
        rollout_state({**stale, "status": {**stale["status"], "observedGeneration": 3}})


# -------------------------------------------------------------------- rollouts


def test_a_rollout_is_patched_into_the_deployment_smoke_tested_changed_and_ended(
    settings, cluster, service, champion_served
):
    state = champion_served
    deployer = make_deployer(settings, cluster, service)
    canary = RolloutConfig(state["v2"], "canary", 0.05, "customer_id")
    since = len(cluster.calls)

    url = deployer.start_rollout(MODEL_NAME, canary, state["sample"], state["second"].probabilities(state["sample"]))

    verbs = cluster.verbs(since)
    assert verbs[:4] == ["read Deployment", "read Service", "read HorizontalPodAutoscaler", "replace Deployment"]
    assert set(verbs[4:]) == {"read_status Deployment"}, "the rollout was not waited for like a version change"
    assert url == service.url
    deployment = cluster.deployment()
    assert deployment_version(deployment) == state["v1"] and deployment_rollout(deployment) == canary
    assert deployment["metadata"]["annotations"][REVISION_ANNOTATION] == "2"
    assert deployer.rollout_status(MODEL_NAME) == canary
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"], "a rollout moved the champion"
    assert f'version="{state["v2"]}"' in deployer.metrics_text(MODEL_NAME)

    wider = RolloutConfig(state["v2"], "canary", 0.25, "customer_id")
    deployer.update_rollout(MODEL_NAME, wider)
    assert deployer.rollout_status(MODEL_NAME) == wider == cluster.endpoint_rollout()
    with pytest.raises(ValueError, match="start_rollout first"):
        deployer.update_rollout(MODEL_NAME, RolloutConfig(state["v1"], "shadow"))

    assert deployer.end_rollout(MODEL_NAME) == state["v1"]
    assert deployer.rollout_status(MODEL_NAME) is None and cluster.endpoint_rollout() is None
    assert cluster.deployment()["spec"]["template"] == state["v1_deployment"]["spec"]["template"]
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"]


def test_a_candidate_failing_its_smoke_test_is_rolled_back_to_the_champion_alone(
    settings, cluster, service, champion_served
):
    state = champion_served
    broken = register(MODEL_NAME, RaisingModel())
    deployer = make_deployer(settings, cluster, service)

    with pytest.raises(DeployFailed, match="HTTP 500") as failed:
        deployer.start_rollout(
            MODEL_NAME, RolloutConfig(broken, "shadow"), state["sample"], state["first"].probabilities(state["sample"])
        )

    assert "smoke test" in failed.value.stage and "served alone" in failed.value.served_now
    assert deployer.rollout_status(MODEL_NAME) is None and cluster.endpoint_rollout() is None
    assert cluster.endpoint_version() == state["v1"]
    assert alias_version(MODEL_NAME, CHAMPION) == state["v1"]
