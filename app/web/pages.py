"""The browser side of the service: the demo page at ``/`` and the API docs at ``/docs`` and
``/redoc``, all served from this process (no CDN: air-gapped hosts get working docs).

The demo page is static HTML/CSS/JS (``app/web/static``) that calls the public API only. Swagger
UI and ReDoc are FastAPI's own pages with their assets taken from the ``fastapi-offline``
package (FastAPI's documented self-hosting recipe); build the app with ``docs_url=None`` and
``redoc_url=None`` and call ``install_web(app)``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
"""swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js (Swagger UI 5, ReDoc 2)."""

STATIC_URL = "/static"
DOCS_ASSETS_URL = "/static/docs"
OPEN_PREFIXES = (STATIC_URL + "/",)
"""Paths served without an API key: the page and the docs are public; the API is not."""
OPEN_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'self'"
)
"""The pages load nothing from elsewhere, and the browser refuses to: Swagger UI and ReDoc have
inline start-up code and styles, ReDoc's search runs in a blob: worker, and ReDoc's bundle
links a logo on a CDN, which this policy blocks before any request leaves."""


def _local_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["content-security-policy"] = CSP
    return response


def install_web(app: FastAPI) -> None:
    """Serve the demo page, its assets and the self-hosted API docs on ``app``."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    favicon = f"{STATIC_URL}/favicon.svg"

    @app.get("/", include_in_schema=False)
    async def demo() -> FileResponse:
        headers = {"cache-control": "no-cache", "content-security-policy": CSP}
        return FileResponse(STATIC_DIR / "index.html", headers=headers)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=root + oauth2_url,
                swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=root + favicon,
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(oauth2_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=root + favicon,
                with_google_fonts=False,
            )
        )
