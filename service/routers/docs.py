"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their assets served by the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank offline or behind a
strict proxy. The JavaScript, CSS and favicon come from the ``fastapi-offline`` package (a
dependency of the ``server`` extra) and are served under ``/docs/assets``; no page names an
external URL. Like the health probes, the docs need no API key.

>>> app = FastAPI(docs_url=None, redoc_url=None)   # then: install(app)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install", "ASSETS_URL", "CSP", "assets_dir"]

ASSETS_URL = "/docs/assets"
# The pages may load nothing from elsewhere, even what the bundles would fetch by themselves (ReDoc
# shows a logo from its CDN, and hides it when the load fails, as it does here). The pages'
# inline bootstrap scripts and the libraries' inline styles need 'unsafe-inline'.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; frame-ancestors 'self'")


def assets_dir() -> Path:
    """The directory of the packaged Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def _strict(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url``, both from local assets.

    Swagger UI's validator badge (an image from validator.swagger.io) is switched off, ReDoc uses
    the browser's fonts instead of Google's, and a Content-Security-Policy keeps both pages from
    loading anything from another origin.
    """
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    oauth2_url = f"{docs_url}/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _strict(get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_url, swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None}))

    @app.get(oauth2_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _strict(get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False))
