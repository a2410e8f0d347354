"""Case 1: parsing a DAG file touches no network, no database, no Variable, and loads no ML library.

Fault: the dag-processor parses the DAG files in an interpreter where every network
connection, DNS lookup, database connection and Variable/Connection read raises (and is
recorded, in case a DAG file swallowed the error).
Expected: every file parses without an import error, into its one DAG, in both profiles.
State checked: nothing was attempted, and no ML library is in ``sys.modules`` after the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.reliability.conftest import ROOT

pytestmark = pytest.mark.reliability

ML_MODULES = (
    "torch",
    "sklearn",
    "mlflow",
    "great_expectations",
    "evidently",
    "dvc",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
)
DAG_FILES = sorted(path.name for path in (ROOT / "dags").glob("*.py"))

# Airflow itself is imported first (its start-up is not the DAG files'); then every way out is cut.
PARSE_UNDER_GUARD = r"""
import json, socket, sqlite3, sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
import airflow.models.variable
import airflow.sdk
import sqlalchemy.engine.base

attempts = []

def refuse(what):
    def refused(*args, **kwargs):
        attempts.append(what)
        raise RuntimeError(f"{what} while parsing a DAG file")
    return refused

socket.socket.connect = refuse("network connection")
socket.socket.connect_ex = refuse("network connection")
socket.create_connection = refuse("network connection")
socket.getaddrinfo = refuse("DNS lookup")
sqlite3.connect = refuse("SQLite connection")
sqlalchemy.engine.base.Engine.connect = refuse("database connection")
sqlalchemy.engine.base.Engine.raw_connection = refuse("database connection")
for owner in (airflow.sdk.Variable, airflow.models.variable.Variable):
    owner.get = staticmethod(refuse("Variable.get"))
airflow.sdk.Connection.get = staticmethod(refuse("Connection.get"))

ml_modules = ML_MODULES
report = {"dags": {}, "import_errors": {}, "ml_modules": {}, "attempts": attempts}
for path in sorted(Path(DAGS).glob("*.py")):
    bag = DagBag(dag_folder=str(path))
    report["dags"][path.name] = sorted(bag.dag_ids)
    report["import_errors"].update({str(k): str(v)[-2000:] for k, v in bag.import_errors.items()})
    report["ml_modules"][path.name] = sorted(name for name in ml_modules if name in sys.modules)
print("REPORT " + json.dumps(report))
"""


@pytest.mark.parametrize("profile", ["local", "kubernetes"])
def test_parsing_makes_no_call_and_loads_no_ml_library(profile, tmp_path):
    code = PARSE_UNDER_GUARD.replace("ML_MODULES", repr(ML_MODULES)).replace("DAGS", repr(str(ROOT / "dags")))
    env = {
        **os.environ,
        "MLOPS_PROFILE": profile,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
        # a Variable or Connection from the environment would be found without a call: none here
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
    }
    env = {key: value for key, value in env.items() if not key.startswith(("AIRFLOW_VAR_", "AIRFLOW_CONN_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])

    assert report["import_errors"] == {}, report["import_errors"]
    assert report["dags"] == {name: [name.removesuffix(".py")] for name in DAG_FILES}
    assert report["attempts"] == [], f"parsing tried: {report['attempts']}"
    assert report["ml_modules"] == {name: [] for name in DAG_FILES}, report["ml_modules"]
