"""Case 3: the data version a run asks for cannot be had.

Fault: the training command line (what the GPU pod runs) is given a data reference whose
git rev does not exist in the data registry; or the DVC remote is unreachable while the
bytes are only there (a training pod reads the registry from its git remote, with an empty
DVC cache, as on any other machine).
Expected: the command exits non-zero with an error naming the data version (path, rev, md5)
and what is wrong with it.
State checked: no MLflow training run was started, so nothing trained on other data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.reliability.conftest import FIRST_DAY, ROOT

pytestmark = pytest.mark.reliability


def _train(data_ref: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "include.training.train",
        "--data-ref",
        json.dumps(data_ref),
        "--model-type",
        "sklearn_hgb",
        "--epochs",
        "1",
        "--tag",
        "airflow.run_id=data-version-fault",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def pod_view(stack, tmp_path_factory):
    """A snapshot in a registry pushed to a bare git remote, as the kubernetes profile does."""
    from include.data.partitions import read_window
    from include.data.versioning import DataRegistry

    folder = tmp_path_factory.mktemp("pod-view")
    remote = folder / "registry.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    dvc_remote = folder / "dvc-remote"
    registry = DataRegistry(folder / "registry", str(dvc_remote), git_remote=str(remote))
    registry.ensure()
    start = FIRST_DAY
    ref = registry.snapshot(
        read_window(stack.spec, start, start + timedelta(days=2)), stack.spec.name, start, start + timedelta(days=2)
    )
    return ref.to_dict(), dvc_remote


def test_a_data_version_that_does_not_exist_is_named_and_nothing_trains(stack, pod_view):
    data_ref, _ = pod_view
    missing = {**data_ref, "rev": "0123456789abcdef0123456789abcdef01234567"}
    runs_before = len(stack.training_runs())

    result = _train(missing)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"rev {missing['rev']} does not exist" in output or "0123456789abcdef" in output, output[-3000:]
    assert missing["path"] in output and missing["md5"] in output, output[-3000:]
    assert len(stack.training_runs()) == runs_before, "a training run started without its data"


def test_an_unreachable_dvc_remote_is_named_and_nothing_trains(stack, pod_view):
    data_ref, dvc_remote = pod_view
    runs_before = len(stack.training_runs())
    hidden = dvc_remote.with_name("dvc-remote-unreachable")
    dvc_remote.rename(hidden)
    try:
        result = _train(data_ref)
    finally:
        hidden.rename(dvc_remote)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "cannot load" in output and data_ref["rev"] in output and data_ref["md5"] in output, output[-3000:]
    assert len(stack.training_runs()) == runs_before, "a training run started without its data"
