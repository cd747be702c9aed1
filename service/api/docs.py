"""The interactive API docs (``/docs``, Swagger UI) with no CDN.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so on an offline machine they are
blank. FastAPI's documented way to self-host them: turn the default pages off
(``docs_url=None, redoc_url=None``) and serve :func:`get_swagger_ui_html` pointing at local
asset URLs. The assets come from the ``fastapi-offline`` package (a Swagger UI 5 build, updated
with it); this module serves a fixed list of its files under ``/static/docs/``, public like the
web page's assets. ``/redoc`` is off: ReDoc's page still fetches its logo from its CDN, and one
interactive page is enough.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

ASSETS_URL = "/static/docs"
ASSETS = files("fastapi_offline") / "static"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}
FAVICON_URL = "/static/favicon.svg"  # the web page's own


def install_docs(app: FastAPI) -> None:
    """``/docs``, its OAuth2 redirect and its assets; the app must be created with
    ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=FAVICON_URL,
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.api_route(f"{ASSETS_URL}/{{name}}", methods=["GET", "HEAD"], include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSET_TYPES:  # a fixed list: no path ever reaches the file system
            raise HTTPException(404)
        body = (ASSETS / name).read_bytes()
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(body, media_type=ASSET_TYPES[name], headers=headers)
