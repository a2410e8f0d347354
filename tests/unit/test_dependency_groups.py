"""Each image installs only its process's dependency group (pyproject.toml), so the process must
not reach for what another process needs: the serving path loads no Airflow, Great Expectations,
Evidently, DVC or test tool, and its group does not install them.

(That the groups are enough was checked by serving a registered model from a virtualenv holding
only the serving group; an optional import a library makes when a package happens to be present,
such as FastAPI's orjson, cannot be told apart from a needed one by inspecting this environment.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what each process imports: its modules, then the libraries they import when they run
# (a server loads the model's own code, mlflow's pyfunc and the estimator's library)
PROCESSES = {
    "serving": [
        "include.serving.__main__",
        "include.serving.app",
        "include.training.model",
        "include.monitoring.inference_log",
        "mlflow.pyfunc",
        "uvicorn",
        "sklearn.ensemble",
        "joblib",
        "torch",
        "fsspec.implementations.local",
        "pyarrow.parquet",
    ],
    "training": [
        "include.training.train",
        "include.data.versioning",
        "include.evaluation.metrics",
        "include.tracking",
        "mlflow.models",
        "sklearn.ensemble",
        "torch",
        "dvc.repo",
    ],
}


def _imported_distributions(modules: list[str]) -> dict[str, list[str]]:
    """Top-level module -> its distributions, for everything importing ``modules`` loads."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
    )
    providers = metadata.packages_distributions()
    return {
        name: providers[name]
        for name in json.loads(completed.stdout.splitlines()[-1])
        if name in providers and name not in sys.stdlib_module_names
    }


def _closure(requirements: list[str]) -> set[str]:
    """The distributions a group installs: its packages and everything they require."""
    seen, todo = set(), [name.lower().replace("_", "-") for name in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            todo.append(
                requirement.split(";")[0]
                .split("[")[0]
                .split(" ")[0]
                .split("<")[0]
                .split(">")[0]
                .split("=")[0]
                .split("!")[0]
                .split("~")[0]
                .strip()
                .lower()
                .replace("_", "-")
            )
    return seen


# what each process must never load or install
FOREIGN = {
    "serving": {"apache-airflow", "great-expectations", "evidently", "dvc", "selenium", "pytest"},
    "training": {"apache-airflow", "great-expectations", "evidently", "selenium", "pytest"},
}


@pytest.mark.parametrize("group", list(PROCESSES))
def test_a_process_loads_and_its_image_installs_nothing_of_another_process(group):
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    imported = {
        dist.lower().replace("_", "-") for dists in _imported_distributions(PROCESSES[group]).values() for dist in dists
    }
    assert not imported & FOREIGN[group], f"the {group} path imports {sorted(imported & FOREIGN[group])}"
    installed = _closure(groups[group])
    assert not installed & FOREIGN[group], f"the {group} group installs {sorted(installed & FOREIGN[group])}"
    # and the group names what the process's own code imports at its top level
    assert (
        {"fastapi", "uvicorn", "mlflow-skinny", "pandas", "torch"} <= installed
        if group == "serving"
        else {"mlflow", "dvc", "pandas", "torch", "scikit-learn"} <= installed
    )
