"""The Airflow plugin of the Models page: the FastAPI app under ``/mlops-models`` and a "Models" nav entry.

Airflow's plugin manager imports this in every component, the DAG processor included, so it
imports no web framework or ML library: the app is built the first time the api-server reads
``fastapi_apps``.
"""

from __future__ import annotations

from functools import cache

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.models_page import URL_PREFIX, URL_ROUTE


@cache
def _app():
    from mlops_airflow.models_page.app import create_app

    return create_app()


class ModelsPagePlugin(AirflowPlugin):
    """Adds the Models page: champion timeline, gate checks, lineage, model cards, drift, rollouts."""

    name = "mlops_models_page"
    # rendered by the Airflow UI in a frame at /plugin/models; the frame's requests carry the
    # UI's own session cookie, which the app checks
    external_views = [
        {
            "name": "Models",
            "href": f"{URL_PREFIX}/",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict]:
        """The page's app, built on first use (the api-server's), with its mount point."""
        return [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Models page"}]
