"""The ``train`` task in both profiles: one command line, two places to run it.

kubernetes: a KubernetesPodOperator runs ``python -m include.training.train`` in
the training image on a GPU node; the command writes its result to
``/airflow/xcom/return.json`` and the operator's sidecar pushes it to XCom.
local: the same command line runs as a subprocess of the worker and writes the
same JSON to a temporary file, which becomes the task's XCom.
Either way the task id is ``train`` and its XCom is ``{"run_id", "model_uri", "device"}``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from mlops_airflow.profiles import KUBERNETES, current_profile

TRAINING_MODULE = "include.training.train"
POD_XCOM_PATH = "/airflow/xcom/return.json"
GPU_POOL = "gpu"


class LocalTrainingOperator(BaseOperator):
    """Runs the training command line as a subprocess and returns what it wrote as XCom."""

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4d9"

    def __init__(self, *, arguments: list[str], **kwargs):
        super().__init__(**kwargs)
        self.arguments = arguments

    def execute(self, context) -> dict[str, Any]:
        from mlops_airflow.runtime import task_settings

        settings = task_settings()
        with tempfile.TemporaryDirectory(prefix="train-") as tmp:
            xcom_path = os.path.join(tmp, "return.json")
            command = [sys.executable, "-m", TRAINING_MODULE, *self.arguments, "--xcom-path", xcom_path]
            self.log.info("running %s", " ".join(command))
            env = {**os.environ, "MLOPS_HOME": str(settings.home), "MLFLOW_TRACKING_URI": settings.tracking_uri}
            # The child gets its own session so that killing it (timeout, task kill)
            # also ends anything it spawned, and never leaves a half-trained job behind.
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       env=env, start_new_session=True)
            self._process = process
            try:
                for line in process.stdout:
                    self.log.info("%s", line.rstrip())
                returncode = process.wait()
            except BaseException:
                _kill_session(process)
                raise
            if returncode != 0:
                raise RuntimeError(f"training command exited with code {returncode}; see the log above")
            try:
                with open(xcom_path) as handle:
                    return json.load(handle)
            except FileNotFoundError:
                raise RuntimeError("training command succeeded but wrote no result") from None

    def on_kill(self) -> None:
        # the task was stopped from outside (UI, timeout): the training job goes with it
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            _kill_session(process)


def _kill_session(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def gpu_resources(gpus: int):
    """Container resources for a training pod asking for ``gpus`` GPUs."""
    from kubernetes.client import models as k8s

    limits = {"cpu": "4", "memory": "16Gi"}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": "8Gi"}, limits=limits)


def training_task(*, arguments: list[str], execution_timeout: timedelta, **kwargs) -> BaseOperator:
    """The ``train`` task for the current profile."""
    common = dict(task_id="train", pool=GPU_POOL, pool_slots=1, execution_timeout=execution_timeout, **kwargs)
    if current_profile() != KUBERNETES:
        return LocalTrainingOperator(arguments=arguments, **common)

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    class GpuTrainingPodOperator(KubernetesPodOperator):
        """GPU limits follow the run's ``gpus`` param, which is only known at run time."""

        def build_pod_request_obj(self, context=None, **kw):
            if context is not None:
                self.container_resources = gpu_resources(int(context["params"]["gpus"]))
                if isinstance(self.node_selector, str):
                    self.node_selector = json.loads(self.node_selector or "{}")
            return super().build_pod_request_obj(context, **kw)

    return GpuTrainingPodOperator(
        name="train",
        namespace="{{ var.value.training_namespace }}",
        image="{{ var.value.training_image }}",
        cmds=["python", "-m", TRAINING_MODULE],
        arguments=[*arguments, "--xcom-path", POD_XCOM_PATH],
        node_selector="{{ var.value.gpu_node_selector }}",
        tolerations=[k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        container_resources=gpu_resources(1),
        kubernetes_conn_id="kubernetes_default",
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_pod",
        # GPU nodes often scale up from zero: give the pod time to be scheduled
        startup_timeout_seconds=900,
        **common,
    )
