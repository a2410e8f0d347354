"""The ``approval_required`` branch of ml_training reads the Variable ``deploy_approval_required``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIABLE_ENV = "AIRFLOW_VAR_DEPLOY_APPROVAL_REQUIRED"


@pytest.fixture(scope="module")
def approval_required():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "ml_training.py"))
    assert bag.import_errors == {}
    return bag.dags["ml_training"].get_task("approval_required").python_callable


@pytest.mark.parametrize(
    "value, branch",
    [
        ("true", "approve_deploy"),
        ("1", "approve_deploy"),
        (" Yes ", "approve_deploy"),
        ("on", "approve_deploy"),
        ("false", "deploy"),
        ("0", "deploy"),
        ("no", "deploy"),
        ("", "deploy"),
    ],
)
def test_the_variable_picks_the_branch(approval_required, monkeypatch, value, branch):
    monkeypatch.setenv(VARIABLE_ENV, value)
    assert approval_required() == branch


def test_an_unknown_value_deploys_without_approval_and_says_so(approval_required, monkeypatch, caplog):
    monkeypatch.setenv(VARIABLE_ENV, "required")
    with caplog.at_level(logging.WARNING):
        assert approval_required() == "deploy"
    assert "deploy_approval_required" in caplog.text and "'required'" in caplog.text
