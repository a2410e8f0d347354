"""The Models page's FastAPI app, mounted by the Airflow api-server under ``/mlops-models``.

Routes, each for an authenticated Airflow user only (the api-server's auth manager, through
Airflow's own ``get_user``: the UI's ``_token`` cookie or an ``Authorization: Bearer`` JWT;
none gives 401, an invalid one 403, as on Airflow's own API):

- ``GET /``: the page, server-rendered HTML with inline SVG charts (no script, nothing fetched);
- ``GET /api/models``: the page's JSON (:func:`include.reporting.models_page.models_page`);
- ``GET /reports/{day}``: that day's drift report (``report.html`` from the report store).
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mlops_airflow.models_page import URL_PREFIX


def page_settings():
    """The settings the tasks use (MLflow from the ``mlflow_default`` connection when defined),
    else those of the environment; an ``include.settings.Settings``."""
    from include.settings import Settings

    try:
        from mlops_airflow.runtime import task_settings

        return task_settings()
    except Exception:  # noqa: BLE001 - outside a task a connection lookup may fail: the environment holds the rest
        return Settings.from_env()


# Airflow's own dependency, as on its API routes: 401 without a token, 403 with an invalid one
User = Annotated[BaseUser, Depends(get_user)]


def _report_url(day: str) -> str:
    return f"{URL_PREFIX}/reports/{day}"


def create_app(settings_factory=page_settings) -> FastAPI:
    """The page's app; ``settings_factory()`` gives the settings read on each request."""
    app = FastAPI(title="Models", docs_url=None, redoc_url=None, openapi_url=None)

    def document() -> dict:
        from include.reporting.models_page import models_page

        return models_page(settings_factory(), report_url=_report_url)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if "/api/" not in request.url.path:
            message = "Sign in to Airflow first." if exc.status_code == 401 else str(exc.detail)
            body = f"<!doctype html><title>Models</title><p>{exc.status_code}: {message}</p>"
            return HTMLResponse(body, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", response_class=HTMLResponse)
    def page(user: User) -> HTMLResponse:
        from mlops_airflow.models_page.render import render_page

        return HTMLResponse(render_page(document()))

    @app.get("/api/models")
    def api_models(user: User) -> JSONResponse:
        return JSONResponse(document())

    @app.get("/reports/{day}", response_class=HTMLResponse)
    def report(day: str, user: User) -> HTMLResponse:
        from include.reporting.drift_days import report_file

        try:
            body = report_file(settings_factory(), day)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except FileNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return HTMLResponse(body)

    return app
