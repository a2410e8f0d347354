"""The ``train`` task of the local profile: the training command line as a subprocess.

The command writes its result JSON to a temporary file, which becomes the task's
XCom, the same ``{"run_id", "model_uri", "device"}`` the training pod returns.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any, Sequence

from airflow.sdk import BaseOperator

# the command line both profiles run: here under the worker's interpreter, on a pod in the training image
TRAINING_MODULE = "include.training.train"


def _airflow_run_tags(context) -> dict[str, str]:
    """The MLflow tags that tie a training run to the Airflow run that started it."""
    return {"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]}


class LocalTrainingOperator(BaseOperator):
    """Runs the training command line as a subprocess and returns what it wrote as XCom."""

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4d9"

    def __init__(self, *, arguments: list[str], **kwargs):
        super().__init__(**kwargs)
        self.arguments = arguments

    def execute(self, context) -> dict[str, Any]:
        """Train in a child process of the worker, streaming its output into the task log.

        Returns the JSON object the command wrote to its ``--xcom-path`` file. Raises
        ``RuntimeError`` when the command exits non-zero or writes no result; whatever stops
        the task (timeout, kill) is re-raised after the child's whole session is killed. Either
        way MLflow runs this attempt left RUNNING are marked KILLED first.
        """
        # imported at run time: it reads the task's settings, which parsing a DAG never needs
        from mlops_airflow.runtime import task_settings

        settings = task_settings()
        with tempfile.TemporaryDirectory(prefix="train-") as tmp:
            xcom_path = os.path.join(tmp, "return.json")
            # the run carries the Airflow run it belongs to, which is how a failed attempt finds it
            run_tags = [arg for key, value in _airflow_run_tags(context).items() for arg in ("--tag", f"{key}={value}")]
            command = [sys.executable, "-m", TRAINING_MODULE, *self.arguments, *run_tags, "--xcom-path", xcom_path]
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
                # the timeout or a kill of the task: the job goes with it, and so does its run
                _kill_session(process)
                self._end_orphaned_runs(settings, context, "the training task was stopped")
                raise
            if returncode != 0:
                self._end_orphaned_runs(settings, context, f"the training command exited with code {returncode}")
                raise RuntimeError(f"training command exited with code {returncode}; see the log above")
            try:
                with open(xcom_path) as handle:
                    return json.load(handle)
            except FileNotFoundError:
                raise RuntimeError("training command succeeded but wrote no result") from None

    def _end_orphaned_runs(self, settings, context, reason: str) -> None:
        """A killed trainer cannot end its MLflow run; end it here, so that a retry starts clean
        and nothing reads the half-trained run as one in progress."""
        from include.tracking import TRAINING_EXPERIMENT, end_orphaned_runs

        try:
            ended = end_orphaned_runs(settings, TRAINING_EXPERIMENT, _airflow_run_tags(context), reason)
        except Exception as exc:  # the tracking server may be what failed: keep the original error
            self.log.warning("could not end the training run(s) left RUNNING by this attempt: %s", exc)
            return
        if ended:
            self.log.warning("marked MLflow run(s) %s KILLED: %s", ", ".join(ended), reason)

    def on_kill(self) -> None:
        # the task was stopped from outside (UI, timeout): the training job goes with it
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            _kill_session(process)


def _kill_session(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
