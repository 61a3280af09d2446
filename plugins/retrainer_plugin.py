"""Airflow 3 plugin: the *Retraining* view.

A FastAPI sub-app served by the Airflow API server under ``/retrainer`` plus a nav entry (``external_views``)
that shows it framed in the Airflow UI at ``/plugin/retraining``. Pages:

* ``/retrainer/``: one row per configured model the user may read: champion, last check and verdict,
  drift level, last retrain, challenger.
* ``/retrainer/models/<name>``: chart over batches (data drift share, prediction drift, performance) with
  retrain / promotion marks, the decision log with reasons (suppressed triggers included), retrains,
  versions and promotion history, links to Evidently HTML, GX Data Docs, MLflow runs and Airflow DAG runs.
* ``/retrainer/api/overview`` and ``/retrainer/api/models/<name>``: the same data as JSON.
* ``/retrainer/files/reports/<name>/...``: the report files under the data root.

Security:

* **Authentication**: every route requires an Airflow user: the JWT from ``Authorization: Bearer`` or the
  UI's ``_token`` cookie is validated by Airflow's own auth manager. Without one, pages redirect to the
  login page and the API and files answer 401; never data.
* **Authorization**: a model is visible to a user only if the configured auth manager lets that user read
  both of its DAGs (``<name>__monitor`` and ``<name>__retrain``: the DAG and its runs). Otherwise its page,
  JSON and files answer 403 and the overview leaves it out.
* FastAPI's ``/docs``, ``/redoc`` and ``/openapi.json`` are turned off.
* Pages are Jinja2 templates (``plugins/templates/``) with autoescaping; report files are served with
  ``Content-Security-Policy: sandbox allow-scripts`` (an opaque origin: their scripts cannot read the
  Airflow session or call its API as the user) and ``X-Content-Type-Options: nosniff``.

All data comes from ``retrainer.overview``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import retrainer_view as view  # the plugins folder is on sys.path
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from retrainer_view import PREFIX

REPORT_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # the page has no scripts of its own (default-src 'none' forbids any); connect-src 'self' lets tools
    # that drive the page (a browser test) fetch our own routes; framed only by the Airflow UI (same origin)
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "same-origin",
}


class _LoginRequired(Exception):
    def __init__(self, next_url: str):
        self.next_url = next_url


async def require_user(request: Request) -> Any:
    """The Airflow user behind the request's JWT (header or ``_token`` cookie); 401 / login redirect otherwise."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    is_page = not request.url.path.startswith((f"{PREFIX}/api", f"{PREFIX}/files"))
    try:
        return await resolve_user_from_token(token)
    except HTTPException as exc:
        if is_page and request.method == "GET":
            raise _LoginRequired(str(request.url.path)) from exc
        raise HTTPException(status_code=401, detail=f"authentication required: {exc.detail}") from exc


CurrentUser = Annotated[Any, Depends(require_user)]  # resolved once per request (FastAPI caches it)

app = FastAPI(
    title="Retrainer",
    dependencies=[Depends(require_user)],
    docs_url=None,  # no unauthenticated API description
    redoc_url=None,
    openapi_url=None,
)


@app.exception_handler(_LoginRequired)
async def _to_login(request: Request, exc: _LoginRequired) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    login = get_auth_manager().get_url_login()  # the configured auth manager's own login page
    return RedirectResponse(f"{login}?next={quote(exc.next_url)}", status_code=303)


# -- authorization ----------------------------------------------------------------------------------
def dag_ids(name: str) -> tuple[str, str]:
    """The DAGs whose read permission grants access to a model's view."""
    return f"{name}__monitor", f"{name}__retrain"


def may_read(user: Any, name: str) -> bool:
    """Whether the auth manager lets ``user`` read the model's DAGs and their runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    requests: list[Any] = [
        {"method": "GET", "access_entity": entity, "details": DagDetails(id=dag_id)}
        for dag_id in dag_ids(name)
        for entity in (None, DagAccessEntity.RUN)
    ]
    return bool(get_auth_manager().batch_is_authorized_dag(requests, user=user))


def _require_model(user: Any, name: str) -> None:
    if not may_read(user, name):
        raise HTTPException(status_code=403, detail=f"not allowed to read the DAGs of model {name!r}")


def _visible_rows(user: Any) -> list[dict[str, Any]]:
    """The overview rows (``retrainer.overview.overview``) of the models ``user`` may read, computed only
    for those; a model whose config is invalid is a row with its error, under the same check."""
    from retrainer import overview, settings
    from retrainer.config import load_valid

    configs, errors = load_valid(settings.config_dir())
    rows = [overview.summary(c) for c in configs if may_read(user, c.name)]
    rows += [overview.invalid(n, e) for n, e in errors.items() if may_read(user, n)]
    return sorted(rows, key=lambda r: r["name"])


def _model_of_file(path: str) -> str:
    """``reports/<name>/...`` -> ``<name>``; anything else is not a report file."""
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or parts[0] != "reports" or ".." in parts:
        raise HTTPException(status_code=404, detail=f"no report file {path!r}")
    return parts[1]


# -- data -------------------------------------------------------------------------------------------
@app.get("/api/overview")
def api_overview(user: CurrentUser) -> JSONResponse:
    return JSONResponse(_visible_rows(user))


@app.get("/api/models/{name}")
def api_model(name: str, user: CurrentUser) -> JSONResponse:
    _require_model(user, name)
    return JSONResponse(_detail(name))


@app.get("/files/{path:path}")
def files(path: str, user: CurrentUser) -> FileResponse:
    from retrainer import overview

    _require_model(user, _model_of_file(path))
    try:
        return FileResponse(overview.data_file(path), headers=REPORT_HEADERS)
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"no report file {path!r}") from None


def _detail(name: str) -> dict[str, Any]:
    from retrainer import overview
    from retrainer.exceptions import ConfigError

    try:
        return overview.model_detail(name)
    except ConfigError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


# -- pages ------------------------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse)
def page_overview(user: CurrentUser) -> HTMLResponse:
    return HTMLResponse(view.overview_page(_visible_rows(user)), headers=PAGE_HEADERS)


@app.get("/models/{name}", response_class=HTMLResponse)
def page_model(name: str, user: CurrentUser) -> HTMLResponse:
    _require_model(user, name)
    return HTMLResponse(view.model_page(name, _detail(name)), headers=PAGE_HEADERS)


class RetrainerPlugin(AirflowPlugin):
    name = "retrainer"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": app, "url_prefix": PREFIX, "name": "Retrainer"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "Retraining", "href": f"{PREFIX}/", "destination": "nav", "url_route": "retraining"}
    ]
