"""The environment the local stack gives every Airflow process: which metadata DB, and how long it waits for it."""

from __future__ import annotations

from scripts.local_stack import LocalStack


def test_the_sqlite_database_is_the_airflow_homes_and_waits_30_s_for_its_lock(tmp_path):
    env = LocalStack(home=tmp_path).env()
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/airflow/airflow.db?timeout=30"


def test_a_different_airflow_home_brings_its_own_database(tmp_path):
    env = LocalStack(home=tmp_path / "stack", extra_env={"AIRFLOW_HOME": str(tmp_path / "shared")}).env()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/shared/airflow.db?timeout=30"


def test_a_database_given_explicitly_is_kept(tmp_path):
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    env = LocalStack(home=tmp_path, extra_env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}).env()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url


def test_the_models_page_url_is_the_ui_route_of_the_plugin(tmp_path):
    from mlops_airflow.models_page.plugin import ModelsPagePlugin
    from scripts.local_stack import LocalStack, models_page_url

    stack = LocalStack(home=tmp_path, api_port=8123)
    [view] = ModelsPagePlugin.external_views
    assert models_page_url(stack) == f"http://127.0.0.1:8123/plugin/{view['url_route']}"
