"""The Models page through Airflow's own api-server app: its plugin loaded from plugins/, its routes behind
Airflow's authentication (a real JWT from the configured auth manager), on the session's Airflow DB."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_airflow.models_page import URL_PREFIX


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Airflow's api-server app (plugins included) and a valid token of its auth manager."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("models-page-api") / "home"
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        patch.setenv("MLOPS_PROFILE", "local")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        purge_cached_app()
        app = create_app()
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield client, token
        purge_cached_app()


def test_the_plugin_is_loaded_with_its_navigation_entry(api):
    client, token = api
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "mlops_models_page"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == URL_PREFIX
    [view] = plugin["external_views"]
    assert (view["name"], view["url_route"], view["href"]) == ("Models", "models", f"{URL_PREFIX}/")


@pytest.mark.parametrize("path", ["/", "/api/models", "/reports/2026-03-01"])
def test_every_route_refuses_an_unauthenticated_request(api, path):
    client, _ = api
    client.cookies.clear()
    assert client.get(f"{URL_PREFIX}{path}").status_code == 401


def test_an_invalid_token_is_refused(api):
    client, _ = api
    assert client.get(f"{URL_PREFIX}/api/models", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403


def test_with_a_token_the_json_and_the_page_answer(api):
    client, token = api
    response = client.get(f"{URL_PREFIX}/api/models", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model_name"] == "customer_churn" and document["versions"] == []
    # the UI's session cookie works as well: the page is what the Airflow UI's frame loads
    client.cookies.set("_token", token)
    try:
        page = client.get(f"{URL_PREFIX}/")
        missing = client.get(f"{URL_PREFIX}/reports/2026-03-01")
        bad_day = client.get(f"{URL_PREFIX}/reports/..%2Fsecrets")
    finally:
        client.cookies.clear()
    assert page.status_code == 200 and "Champion timeline" in page.text
    # nothing fetched from elsewhere: its one script is inline
    assert " src=" not in page.text and "<link" not in page.text
    assert missing.status_code == 404 and bad_day.status_code in (400, 404)
