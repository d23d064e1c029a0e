"""The omnirecon view's FastAPI app, mounted by the Airflow plugin inside the API server.

Every route requires Airflow's login (the API server's own JWT dependency: `_token` cookie or Bearer header);
a browser without one is redirected to the login page, anything else gets 401.
"""
from __future__ import annotations

from functools import lru_cache

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

URL_PREFIX = "/omnirecon"
# Values in the page are escaped; the CSP stops anything that slipped through (no scripts at all).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _login_redirect(request: Request, exc: HTTPException):
    """Not logged in: browsers go to Airflow's login page (and come back), API clients get the 401."""
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app() -> FastAPI:
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    from omnirecon.config import load_settings
    from omnirecon.ledger import get_ledger
    from omnirecon.report.templating import render
    from omnirecon.ui import views

    app = FastAPI(title="omnirecon", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(requires_access_view(AccessView.WEBSITE))])
    app.add_exception_handler(HTTPException, _login_redirect)

    @app.get("/", response_class=HTMLResponse)
    def overview() -> HTMLResponse:
        data = views.overview(get_ledger(migrate=False), load_settings())   # the pipeline owns the schema
        return HTMLResponse(render("ui_overview.html.j2", d=data, prefix=URL_PREFIX), headers=SECURITY_HEADERS)

    @app.get("/report")
    def latest_report():
        path = views.latest_report()
        if path is None:
            raise HTTPException(404, "no report yet: omnirecon_daily_report has not written one")
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    return app


@lru_cache(maxsize=1)
def get_app() -> FastAPI:
    return create_app()
