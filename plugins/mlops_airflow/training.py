"""The ``train`` task in both profiles: one command line, two places to run it.

kubernetes: a KubernetesPodOperator runs ``python -m include.training.train`` in
the training image on a GPU node (:mod:`mlops_airflow.training_pod`).
local: the same command line runs as a subprocess of the worker
(:mod:`mlops_airflow.training_local`).
Either way the task id is ``train``, it takes one slot of the ``gpu`` pool, and
its XCom is ``{"run_id", "model_uri", "device"}``.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseOperator

from mlops_airflow.profiles import KUBERNETES, current_profile
from mlops_airflow.training_local import LocalTrainingOperator

__all__ = ["GPU_POOL", "LocalTrainingOperator", "training_task"]

# The pool counts concurrent GPU training *jobs*: every run takes one slot whatever its
# ``gpus`` param, so a run can never ask the pool for more slots than it has.
GPU_POOL = "gpu"


def training_task(*, arguments: list[str], execution_timeout: timedelta, **kwargs) -> BaseOperator:
    """The ``train`` task for the current profile (``MLOPS_PROFILE``).

    ``arguments`` are those of ``python -m include.training.train``; ``kwargs`` go to the
    operator. Returns a ``LocalTrainingOperator`` (local profile) or a
    ``GpuTrainingPodOperator`` (kubernetes profile). Raises ``ValueError`` when
    ``MLOPS_PROFILE`` names no profile, or (kubernetes) when ``execution_timeout`` is under 10 s.
    """
    common = dict(task_id="train", pool=GPU_POOL, pool_slots=1, execution_timeout=execution_timeout, **kwargs)
    if current_profile() != KUBERNETES:
        return LocalTrainingOperator(arguments=arguments, **common)
    # Imported here, not at the top: the Kubernetes provider is a heavy import that a DAG
    # parsed in the local profile must never pay for.
    from mlops_airflow.training_pod import gpu_training_pod

    return gpu_training_pod(arguments=arguments, **common)
