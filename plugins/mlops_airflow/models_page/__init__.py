"""The Models page of the Airflow UI: a FastAPI app the api-server mounts, and its navigation entry.

:mod:`.plugin` declares both (imported by Airflow's plugin manager, in the DAG processor too,
so it imports nothing heavy); :mod:`.app` is the FastAPI app, built only when the api-server
asks for it; :mod:`.render` turns the page's JSON (:mod:`include.reporting.models_page`) into HTML.
"""

URL_PREFIX = "/mlops-models"
URL_ROUTE = "models"


def page_url(api_url: str) -> str:
    """The Models page inside the Airflow UI at ``api_url`` (e.g. ``http://127.0.0.1:8080``): a str."""
    return f"{api_url.rstrip('/')}/plugin/{URL_ROUTE}"
